"""Small plain CNN for full-batch experiments (E16, edge of stability; Cohen et al. 2021 train simple CNNs):
`depth` units conv3x3 (padding 1) -> norm -> activation -> 2x2 max-pool (while the map is larger than 1x1),
`hidden` channels in every unit (`width` is not used), global average pool, one FC classifier. No skips.

Norm placement `all` (conv-norm-act), `final_prepool`, `final_prefc` (one norm before the pool / the FC), or
`none`; convs have a bias exactly where no norm follows. Weighted layers are numbered 1..depth (convs) and
depth + 1 (FC) from the input (`paper_layers()`, a relative numbering).

Module names: `features.{i}` (ConvUnit with `conv`, `norm`, `act`, `pool`), `final_norm`, `pool`,
`prefc_norm`, `fc`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import Tensor, nn

from bnlab.models.layers import Norms, activation, refuse_residual_options, resolve_num_classes

if TYPE_CHECKING:
    from bnlab.config import ModelConfig


class ConvUnit(nn.Module):
    """conv3x3 -> norm -> activation -> 2x2 max-pool (or identity when the map is already 1x1)."""

    def __init__(self, c_in: int, c_out: int, norm: nn.Module | None, act: str, pool: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=1, bias=norm is None)
        self.norm = norm if norm is not None else nn.Identity()
        self.act = activation(act)
        self.pool = nn.MaxPool2d(2) if pool else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(self.act(self.norm(self.conv(x))))


class SmallCNN(nn.Module):
    """Plain CNN of `depth` conv units of `hidden` channels; depth + 1 weighted layers."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        refuse_residual_options("cnn_cifar", cfg)
        norms = Norms(cfg)
        self.nonlinearity = cfg.activation  # read by init_model for the gain
        units, c, size = [], cfg.in_channels, cfg.image_size
        for _ in range(cfg.depth):
            units.append(ConvUnit(c, cfg.hidden, norms.at(("all",), cfg.hidden), cfg.activation, size > 1))
            c, size = cfg.hidden, max(1, size // 2)
        self.features = nn.Sequential(*units)
        self.final_norm = norms.or_identity(("final_prepool",), c)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.prefc_norm = norms.or_identity(("final_prefc",), c, dim=1)
        self.fc = nn.Linear(c, resolve_num_classes(cfg.num_classes))

    def forward(self, x: Tensor) -> Tensor:
        z = self.pool(self.final_norm(self.features(x))).flatten(1)
        return self.fc(self.prefc_norm(z))

    def block_outputs(self) -> list[str]:
        """Module names of the conv units, from the input."""
        return [f"features.{i}" for i in range(len(self.features))]

    def paper_layers(self) -> dict[str, int]:
        """{module name: relative layer number} (convs 1..depth, the classifier depth + 1)."""
        out = {f"features.{i}.conv": i + 1 for i in range(len(self.features))}
        out["fc"] = len(self.features) + 1
        return out
