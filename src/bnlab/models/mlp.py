"""Fully connected network: flatten the input, `depth` linear layers (depth - 1 hidden layers of
`hidden` units, then the classifier), activation relu or linear (a deep linear network for the
random-matrix experiments).

Norms are 1-d (over the batch for batch-type norms, over features for layer/group norm; instance
norm is refused). Placement `all`: linear-norm-act in every hidden layer; `final_prepool` and
`final_prefc` (the same thing here: there is no pooling): one norm on the classifier's input;
`none`. Linear layers have a bias exactly where no norm follows. Weighted layers are numbered
1..depth from the input (`paper_layers()`, relative numbering).

Module names: `layers.{i}` (LinearUnit with `linear`, `norm`, `act`), `final_norm`, `fc`.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from bnlab.models.layers import activation, check_placement, refuse_residual_options, resolve_num_classes
from bnlab.nn.norms import NORMS


class LinearUnit(nn.Module):
    """linear -> norm -> activation."""

    def __init__(self, d_in: int, d_out: int, norm: nn.Module | None, act: str) -> None:
        super().__init__()
        self.linear = nn.Linear(d_in, d_out, bias=norm is None)
        self.norm = norm if norm is not None else nn.Identity()
        self.act = activation(act)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.norm(self.linear(x)))


class MLP(nn.Module):
    def __init__(
        self,
        *,
        depth: int = 4,
        hidden: int = 512,
        num_classes: int = 10,
        in_features: int = 3 * 32 * 32,
        norm: str = "batch",
        norm_kw: dict[str, Any] | None = None,
        placement: str = "all",
        activation_name: str = "relu",
    ) -> None:
        super().__init__()
        check_placement(placement)
        factory = NORMS.get(norm)
        kw = dict(norm_kw or {})
        use_norms = norm != "none" and placement != "none"
        self.depth = depth
        self.nonlinearity = activation_name
        self.flatten = nn.Flatten()
        units, d = [], in_features
        for _ in range(depth - 1):
            norm_mod = factory(hidden, dim=1, **kw) if use_norms and placement == "all" else None
            units.append(LinearUnit(d, hidden, norm_mod, activation_name))
            d = hidden
        self.layers = nn.Sequential(*units)
        final = use_norms and placement in ("final_prepool", "final_prefc")
        self.final_norm = factory(d, dim=1, **kw) if final else nn.Identity()
        self.fc = nn.Linear(d, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.final_norm(self.layers(self.flatten(x))))

    def block_outputs(self) -> list[str]:
        """Module names of the hidden units (linear-norm-act), from the input."""
        return [f"layers.{i}" for i in range(len(self.layers))]

    def paper_layers(self) -> dict[str, int]:
        """{module name: relative layer number 1..depth} (the classifier is `depth`)."""
        out = {f"layers.{i}.linear": i + 1 for i in range(len(self.layers))}
        out["fc"] = self.depth
        return out


def mlp(
    *,
    depth: int = 4,
    width: int = 1,
    hidden: int = 512,
    activation: str = "relu",
    norm: str = "batch",
    norm_kw: dict[str, Any] | None = None,
    placement: str = "all",
    block: str = "post",
    shortcut: str = "A",
    skipinit: bool = False,
    fixup: bool = False,
    num_classes: int | None = None,
    in_channels: int = 3,
    image_size: int = 32,
) -> MLP:
    """Fully connected net on flattened images; depth = number of linear layers (`width` is unused)."""
    del width
    refuse_residual_options("mlp", block=block, shortcut=shortcut, skipinit=skipinit, fixup=fixup)
    return MLP(
        depth=depth,
        hidden=hidden,
        num_classes=resolve_num_classes(num_classes),
        in_features=in_channels * image_size * image_size,
        norm=norm,
        norm_kw=norm_kw,
        placement=placement,
        activation_name=activation,
    )
