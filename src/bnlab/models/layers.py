"""Building blocks shared by the models (norm placement, activations, shortcuts), and the paper's
layer numbering.

The paper (Bjorck et al. 2018) numbers the weighted layers of ResNet-110 from the input:
conv1 = 1, stage 1 = 2-37, stage 2 = 38-73, stage 3 = 74-109, FC = 110; block j (1..54) holds
layers 2j and 2j+1. `paper_layer_to_local` / `local_to_paper` carry that numbering to a CIFAR
ResNet of any depth 6n+2 by relative depth *within the structure*: conv1 and the FC map to each
other, a block keeps its stage and its relative position inside the stage (first block to first
block, last to last, the rest by rounding), and a layer keeps its position in its block (first or
second conv). At depth 110 both functions are the identity. Shortcut projections (option B) have
no paper number: the paper's network uses zero-padding shortcuts.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bnlab.errors import UserError
from bnlab.nn.blocks import ResidualBlock as ResidualBlock  # re-exported: model blocks subclass it
from bnlab.nn.norms import NORMS

if TYPE_CHECKING:
    from bnlab.config import ModelConfig

PAPER_DEPTH = 110  # weighted layers of the paper's ResNet-110
PAPER_BLOCKS_PER_STAGE = 18  # (110 - 2) / 6
STAGES = 3


def _blocks_per_stage(depth: int) -> int:
    if depth < 8 or (depth - 2) % 6 != 0:
        raise UserError(f"a CIFAR ResNet has depth 6n+2 (8, 14, 20, 32, 56, 110, ...), got {depth}")
    return (depth - 2) // 6


def _round(x: float) -> int:
    """Round half up (Python's round() rounds half to even, which would make the map uneven)."""
    return int(math.floor(x + 0.5))


def _rescale(index: int, n_from: int, n_to: int) -> int:
    """Position `index` in 0..n_from-1 -> the same relative position in 0..n_to-1 (ends map to ends)."""
    if n_from == 1 or n_to == 1:
        return 0
    return _round(index * (n_to - 1) / (n_from - 1))


def _carry(layer: int, n_from: int, n_to: int) -> int:
    """Weighted layer `layer` of a CIFAR ResNet with `n_from` blocks per stage -> the layer at the same
    place in one with `n_to` blocks per stage: conv1 and the FC map to each other, a block conv keeps
    its stage, its block's relative position in the stage and its position (first/second) in the block."""
    if layer == 1:
        return 1
    if layer == 6 * n_from + 2:
        return 6 * n_to + 2
    block, pos = divmod(layer, 2)  # block 1..3n, position 0/1
    stage, i = divmod(block - 1, n_from)
    return 2 * (stage * n_to + _rescale(i, n_from, n_to) + 1) + pos


def paper_layer_to_local(paper_layer: int, depth: int) -> int:
    """The local weighted-layer number (1..depth) of a depth-`depth` CIFAR ResNet that plays the role
    of the paper's ResNet-110 layer `paper_layer` (1..110). Identity at depth 110.

    conv1 (1) -> 1; FC (110) -> depth; a block conv 2j + p (p = 0 first, 1 second conv of block j)
    -> the conv at the same position p in the block at the same relative position of the same stage.
    Example: paper layer 55 (block 27, the 9th of 18 in stage 2, second conv) -> layer 11 at depth 20
    (block 5, the middle of 3 in stage 2, second conv).
    """
    n = _blocks_per_stage(depth)
    if not 1 <= paper_layer <= PAPER_DEPTH:
        raise UserError(f"paper layers are numbered 1..{PAPER_DEPTH}, got {paper_layer}")
    return _carry(paper_layer, PAPER_BLOCKS_PER_STAGE, n)


def local_to_paper(local_layer: int, depth: int) -> int:
    """Inverse direction of `paper_layer_to_local`: the paper's ResNet-110 layer number (1..110) of the
    local weighted layer `local_layer` (1..depth). Identity at depth 110; for depth <= 110,
    paper_layer_to_local(local_to_paper(l, d), d) == l."""
    n = _blocks_per_stage(depth)
    if not 1 <= local_layer <= depth:
        raise UserError(f"a depth-{depth} ResNet has weighted layers 1..{depth}, got {local_layer}")
    return _carry(local_layer, n, PAPER_BLOCKS_PER_STAGE)


def resolve_num_classes(num_classes: int | None) -> int:
    """None (not yet taken from the dataset) -> 10, CIFAR-10's class count."""
    if num_classes is None:
        return 10
    if num_classes < 1:
        raise UserError(f"num_classes must be >= 1, got {num_classes}")
    return num_classes


def check_placement(placement: str) -> None:
    if placement not in ("all", "final_prepool", "final_prefc", "none"):
        raise UserError(f"unknown placement {placement!r}; choose all, final_prepool, final_prefc or none")


class Norms:
    """A model config's norm and its placement, for building a model: `make(c, dim)` builds the norm;
    `at(slots, c, dim)` builds it where the placement is one of `slots` and is None elsewhere (the
    layer before it then keeps its bias); `or_identity` gives nn.Identity there instead."""

    def __init__(self, cfg: ModelConfig) -> None:
        check_placement(cfg.placement)
        self._factory = NORMS.get(cfg.norm)
        self._kw = dict(cfg.norm_kw)
        self.placement = cfg.placement if cfg.norm != "none" else "none"  # norm none fills no slot

    def make(self, c: int, dim: int = 2) -> nn.Module:
        return self._factory(c, dim=dim, **self._kw)

    def at(self, slots: tuple[str, ...], c: int, dim: int = 2) -> nn.Module | None:
        return self.make(c, dim) if self.placement in slots else None

    def or_identity(self, slots: tuple[str, ...], c: int, dim: int = 2) -> nn.Module:
        return self.make(c, dim) if self.placement in slots else nn.Identity()


def refuse_residual_options(model: str, cfg: ModelConfig) -> None:
    """VGG and MLP have no residual branches: refuse the options that only a ResNet has."""
    if cfg.block != "post" or cfg.shortcut != "A" or cfg.skipinit or cfg.fixup:
        raise UserError(
            f"{model} has no residual blocks; leave block, shortcut, skipinit and fixup at their defaults"
        )


def activation(name: str) -> nn.Module:
    """relu -> nn.ReLU; linear -> nn.Identity (a deep linear network)."""
    if name == "relu":
        return nn.ReLU()
    if name == "linear":
        return nn.Identity()
    raise UserError(f"unknown activation {name!r}; choose relu or linear")


class ZeroPadShortcut(nn.Module):
    """He et al.'s option A: subsample by `stride`, append zero channels up to `c_out` (no parameters)."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.c_in, self.c_out, self.stride = c_in, c_out, stride

    def forward(self, x: Tensor) -> Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.c_out - self.c_in))

    def extra_repr(self) -> str:
        return f"{self.c_in}, {self.c_out}, stride={self.stride}"


class Scalar(nn.Module):
    """A learnable scalar added (`kind` bias) or multiplied (`kind` scale); Fixup / SkipInit use it."""

    def __init__(self, kind: str, value: float) -> None:
        super().__init__()
        self.kind = kind
        self.value = nn.Parameter(torch.full((1,), float(value)))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.value if self.kind == "bias" else x * self.value

    def extra_repr(self) -> str:
        return self.kind
