"""VGG-style CIFAR network without skips: `depth` conv3x3 layers in 5 stages of 64w/128w/256w/512w/512w
channels, 2x2 max-pool after each stage (while the feature map is larger than 1x1), global average
pool, one FC classifier.

`depth` counts conv layers. Stage sizes: depth < 10 -> stages 1-2 hold one conv each, else two; the
rest is spread over stages 3-5, later stages taking the remainder. This gives the standard VGG
configurations where they exist: 8 convs = VGG-11's [1,1,2,2,2], 10 = VGG-13's [2,2,2,2,2],
13 = VGG-16's [2,2,3,3,3], 16 = VGG-19's [2,2,4,4,4].
Norm placement as for the ResNet: `all` (conv-norm-act), `final_prepool`, `final_prefc`, `none`;
convs have a bias exactly where no norm follows. The weighted layers are numbered 1..depth (convs)
and depth + 1 (FC) from the input (`paper_layers()`, a relative numbering: no paper mapping).

Module names: `features.{k}` (ConvUnit with `conv`, `norm`, `act`; MaxPool2d modules in between),
`final_norm`, `pool`, `prefc_norm`, `fc`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import Tensor, nn

from bnlab.errors import UserError
from bnlab.models.layers import Norms, activation, refuse_residual_options, resolve_num_classes

if TYPE_CHECKING:
    from bnlab.config import ModelConfig

STAGE_WIDTHS = (64, 128, 256, 512, 512)


def stage_sizes(depth: int) -> list[int]:
    """Conv layers per stage for a VGG with `depth` convs (see the module docstring)."""
    if depth < 5:
        raise UserError(f"vgg_cifar needs at least 5 conv layers (one per stage), got depth {depth}")
    first = 1 if depth < 10 else 2
    rest = depth - 2 * first
    base, extra = divmod(rest, 3)
    return [first, first] + [base + (1 if s >= 3 - extra else 0) for s in range(3)]


class ConvUnit(nn.Module):
    """conv3x3 -> norm -> activation."""

    def __init__(self, c_in: int, c_out: int, norm: nn.Module | None, act: str) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=1, bias=norm is None)
        self.norm = norm if norm is not None else nn.Identity()
        self.act = activation(act)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.norm(self.conv(x)))


class VGGCifar(nn.Module):
    """VGG-style CIFAR net without skips; depth = number of conv layers (`hidden` is unused)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        refuse_residual_options("vgg_cifar", cfg)
        norms = Norms(cfg)
        self.depth = cfg.depth
        self.nonlinearity = cfg.activation  # read by init_model for the gain
        units: list[nn.Module] = []
        c_in, size = cfg.in_channels, cfg.image_size
        if cfg.norm == "instance" and norms.placement != "none":
            self._check_instance(cfg.image_size, cfg.placement)
        for n_convs, w in zip(stage_sizes(cfg.depth), STAGE_WIDTHS):
            c_out = w * cfg.width
            for _ in range(n_convs):
                units.append(ConvUnit(c_in, c_out, norms.at(("all",), c_out), cfg.activation))
                c_in = c_out
            if size >= 2:
                units.append(nn.MaxPool2d(2))
                size //= 2
        self.features = nn.Sequential(*units)
        self.final_norm = norms.or_identity(("final_prepool",), c_in)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.prefc_norm = norms.or_identity(("final_prefc",), c_in, dim=1)
        self.fc = nn.Linear(c_in, resolve_num_classes(cfg.num_classes))

    @staticmethod
    def _check_instance(image_size: int, placement: str) -> None:
        # instance norm needs more than one spatial position; maps shrink 2x per stage (5 stages)
        smallest = image_size // 2**4 if placement == "all" else image_size // 2**5
        if placement in ("all", "final_prepool") and smallest <= 1:
            raise UserError(
                "instance norm would see 1x1 feature maps in this VGG; use another norm, "
                "placement, or a larger image_size"
            )

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.prefc_norm(self.pool(self.final_norm(self.features(x)))))

    def block_outputs(self) -> list[str]:
        """Module names of the conv units (conv-norm-act), from the input."""
        return [f"features.{k}" for k, m in enumerate(self.features) if isinstance(m, ConvUnit)]

    def paper_layers(self) -> dict[str, int]:
        """{module name: relative layer number}: convs 1..depth, FC depth + 1."""
        out = {f"{name}.conv": i for i, name in enumerate(self.block_outputs(), start=1)}
        out["fc"] = self.depth + 1
        return out
