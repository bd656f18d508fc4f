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

from typing import TYPE_CHECKING

from torch import Tensor, nn

from bnlab.models.layers import Norms, activation, refuse_residual_options, resolve_num_classes

if TYPE_CHECKING:
    from bnlab.config import ModelConfig


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
    """Fully connected net on flattened images; depth = number of linear layers (`width` is unused)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        refuse_residual_options("mlp", cfg)
        norms = Norms(cfg)
        self.depth = cfg.depth
        self.nonlinearity = cfg.activation  # read by init_model for the gain
        self.flatten = nn.Flatten()
        units, d = [], cfg.in_channels * cfg.image_size * cfg.image_size
        for _ in range(cfg.depth - 1):
            units.append(LinearUnit(d, cfg.hidden, norms.at(("all",), cfg.hidden, dim=1), cfg.activation))
            d = cfg.hidden
        self.layers = nn.Sequential(*units)
        self.final_norm = norms.or_identity(("final_prepool", "final_prefc"), d, dim=1)
        self.fc = nn.Linear(d, resolve_num_classes(cfg.num_classes))

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
