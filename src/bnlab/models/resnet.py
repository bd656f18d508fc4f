"""He et al.'s CIFAR ResNet (depth 6n+2): conv3x3(16w) -> 3 stages x n blocks (16w/32w/64w channels,
stride 2 at the start of stages 2 and 3) -> global average pool -> FC.

Blocks: `post` (He et al. 2016a: conv-norm-relu-conv-norm, add, relu) or `pre` (He et al. 2016b:
norm-relu-conv-norm-relu-conv, add; the network ends with norm-relu before pooling).
Shortcuts where the shape changes: `A` (subsample + zero channels, no parameters) or `B` (1x1
projection; + norm in post blocks; in pre blocks it reads the block's pre-activated input, as in
He et al. 2016b, and has no norm of its own).
Norm placement: `all` (every norm slot), `final_prepool` (a single 2-d norm after the last stage,
before pooling), `final_prefc` (a single 1-d norm on the pooled features, before the FC), `none`.
A conv has a bias exactly where no norm reads its output (with norms `all`, every read of the
residual stream goes through a norm, so no conv has a bias). `skipinit` multiplies each residual
branch by a learnable scalar that starts at 0 (De & Smith 2020). `fixup` (Zhang et al. 2019, post
blocks without norms) adds scalar biases before each conv, the activation and the FC, and a scalar
multiplier on each branch; convs then have no bias and `init_model` does the Fixup rescaling.

Module names: `conv1`, `norm1`, `act1` (stem), `layer{s}.{i}` (blocks, s = 1..3, i = 0..n-1) with
`conv1`, `norm1`, `conv2`, `norm2`, `shortcut`, then `final_norm`, `final_act` (pre only), `pool`,
`prefc_norm`, `fc`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from torch import Tensor, nn

from bnlab.errors import UserError
from bnlab.models.layers import (
    Norms,
    ResidualBlock,
    Scalar,
    ZeroPadShortcut,
    _blocks_per_stage,
    activation,
    local_to_paper,
    paper_layer_to_local,
    resolve_num_classes,
)

if TYPE_CHECKING:
    from bnlab.config import ModelConfig

NormFn = Callable[..., nn.Module]  # norm(num_features, dim=2) -> module


def conv3x3(c_in: int, c_out: int, stride: int, bias: bool) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=bias)


def make_shortcut(
    c_in: int, c_out: int, stride: int, kind: str, projection: Callable[[], nn.Module]
) -> nn.Module:
    """Identity where the block keeps the shape; else option A (zero-pad) or B (`projection()`)."""
    if stride == 1 and c_in == c_out:
        return nn.Identity()
    if kind == "A":
        return ZeroPadShortcut(c_in, c_out, stride)
    return projection()


class _TwoConvBlock(ResidualBlock):
    """A block whose residual branch is conv1 ... conv2 with norm2 its last norm."""

    conv1: nn.Conv2d
    conv2: nn.Conv2d
    norm2: nn.Module
    _has_norm: bool

    def branch_convs(self) -> list[nn.Conv2d]:
        return [self.conv1, self.conv2]

    def branch_last_norm(self) -> nn.Module | None:
        return self.norm2 if self._has_norm else None


class BasicBlock(_TwoConvBlock):
    """Post-activation basic block: relu(norm2(conv2(relu(norm1(conv1(x))))) + shortcut(x))."""

    def __init__(self, c_in: int, c_out: int, stride: int, cfg: ModelConfig, norm: NormFn | None) -> None:
        super().__init__()
        has_norm, fixup, act = norm is not None, cfg.fixup, cfg.activation
        bias = not has_norm and not fixup  # Fixup's scalar biases replace conv biases
        self.fixup = fixup
        self.conv1 = conv3x3(c_in, c_out, stride, bias)
        self.norm1 = norm(c_out) if norm else nn.Identity()
        self.act1 = activation(act)
        self.conv2 = conv3x3(c_out, c_out, 1, bias)
        self.norm2 = norm(c_out) if norm else nn.Identity()
        self.act2 = activation(act)
        self._has_norm = has_norm
        self.shortcut = make_shortcut(
            c_in,
            c_out,
            stride,
            cfg.shortcut,
            lambda: nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=bias), norm(c_out) if norm else nn.Identity()
            ),
        )
        self.skip_gain = Scalar("scale", 0.0) if cfg.skipinit else None
        if fixup:
            self.bias1a, self.bias1b = Scalar("bias", 0.0), Scalar("bias", 0.0)
            self.bias2a, self.bias2b = Scalar("bias", 0.0), Scalar("bias", 0.0)
            self.scale = Scalar("scale", 1.0)

    def forward(self, x: Tensor) -> Tensor:
        if self.fixup:  # Zhang et al.'s reference code, cifar ResNet BasicBlock
            out = self.conv1(self.bias1a(x))
            out = self.act1(self.bias1b(out))
            out = self.conv2(self.bias2a(out))
            out = self.bias2b(self.scale(out))
            identity = x if isinstance(self.shortcut, nn.Identity) else self.shortcut(self.bias1a(x))
        else:
            out = self.act1(self.norm1(self.conv1(x)))
            out = self.norm2(self.conv2(out))
            identity = self.shortcut(x)
        if self.skip_gain is not None:
            out = self.skip_gain(out)
        return self.act2(out + identity)


class PreActBlock(_TwoConvBlock):
    """Pre-activation block: x + conv2(relu(norm2(conv1(relu(norm1(x)))))); shortcut B projects relu(norm1(x))."""

    def __init__(self, c_in: int, c_out: int, stride: int, cfg: ModelConfig, norm: NormFn | None) -> None:
        super().__init__()
        act = cfg.activation
        self._has_norm = norm is not None
        bias = norm is None  # with norms, everything that reads a conv output normalizes it first
        self.norm1 = norm(c_in) if norm else nn.Identity()
        self.act1 = activation(act)
        self.conv1 = conv3x3(c_in, c_out, stride, bias)
        self.norm2 = norm(c_out) if norm else nn.Identity()
        self.act2 = activation(act)
        self.conv2 = conv3x3(c_out, c_out, 1, bias)
        self.shortcut = make_shortcut(
            c_in, c_out, stride, cfg.shortcut, lambda: nn.Conv2d(c_in, c_out, 1, stride=stride, bias=bias)
        )
        self._project = isinstance(self.shortcut, nn.Conv2d)  # option B reads the pre-activated input
        self.skip_gain = Scalar("scale", 0.0) if cfg.skipinit else None

    def forward(self, x: Tensor) -> Tensor:
        pre = self.act1(self.norm1(x))
        identity = self.shortcut(pre) if self._project else self.shortcut(x)
        out = self.conv2(self.act2(self.norm2(self.conv1(pre))))
        if self.skip_gain is not None:
            out = self.skip_gain(out)
        return out + identity


class ResNetCifar(nn.Module):
    """CIFAR ResNet of depth 6n+2 (see the module docstring for options and module names); `hidden` is
    unused and any `image_size` works (global pooling)."""

    layer1: nn.Sequential
    layer2: nn.Sequential
    layer3: nn.Sequential

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        n = _blocks_per_stage(cfg.depth)
        norms = Norms(cfg)  # block, shortcut and placement are checked by the ModelConfig
        block, fixup = cfg.block, cfg.fixup
        if fixup and (norms.placement != "none" or block != "post" or cfg.skipinit):
            raise UserError("fixup needs post blocks without norms and without skipinit (set norm none)")
        block_norm = norms.make if norms.placement == "all" else None
        self.depth, self.block_kind, self.fixup = cfg.depth, block, fixup
        self.nonlinearity = cfg.activation  # read by init_model for the gain
        widths = [16 * cfg.width, 32 * cfg.width, 64 * cfg.width]

        self.conv1 = nn.Conv2d(
            cfg.in_channels, widths[0], 3, padding=1, bias=block_norm is None and not fixup
        )
        if block == "post":
            self.norm1 = block_norm(widths[0]) if block_norm else nn.Identity()
            self.act1 = activation(cfg.activation)
        self.stem_bias = Scalar("bias", 0.0) if fixup else None
        make_block = BasicBlock if block == "post" else PreActBlock
        c_in = widths[0]
        for s, c_out in enumerate(widths, start=1):
            blocks = []
            for i in range(n):
                stride = 2 if (s > 1 and i == 0) else 1
                blocks.append(make_block(c_in, c_out, stride, cfg, block_norm))
                c_in = c_out
            self.add_module(f"layer{s}", nn.Sequential(*blocks))
        self.final_norm = norms.or_identity(
            ("final_prepool", "all") if block == "pre" else ("final_prepool",), c_in
        )
        if block == "pre":
            self.final_act = activation(cfg.activation)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.prefc_norm = norms.or_identity(("final_prefc",), c_in, dim=1)
        self.fc_bias = Scalar("bias", 0.0) if fixup else None
        self.fc = nn.Linear(c_in, resolve_num_classes(cfg.num_classes))

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv1(x)
        if self.block_kind == "post":
            x = self.norm1(x)
            if self.stem_bias is not None:
                x = self.stem_bias(x)
            x = self.act1(x)
        x = self.layer3(self.layer2(self.layer1(x)))
        x = self.final_norm(x)
        if self.block_kind == "pre":
            x = self.final_act(x)
        x = self.prefc_norm(self.pool(x))
        if self.fc_bias is not None:
            x = self.fc_bias(x)
        return self.fc(x)

    # ---- layer bookkeeping (names are this model's module names; probes look them up by module)

    def _blocks(self) -> list[tuple[str, ResidualBlock]]:
        return [(f"layer{s}.{i}", b) for s in (1, 2, 3) for i, b in enumerate(getattr(self, f"layer{s}"))]

    def local_layers(self) -> dict[str, int]:
        """{module name: local weighted-layer number 1..depth} (conv1, block convs, fc; no projections)."""
        out = {"conv1": 1}
        for j, (name, _) in enumerate(self._blocks(), start=1):
            out[f"{name}.conv1"], out[f"{name}.conv2"] = 2 * j, 2 * j + 1
        out["fc"] = self.depth
        return out

    def paper_layers(self) -> dict[str, int]:
        """{module name: the paper's ResNet-110 layer number} for every weighted layer of the paper's
        architecture (conv1 = 1 ... FC = 110); other depths map through `local_to_paper`."""
        return {name: local_to_paper(loc, self.depth) for name, loc in self.local_layers().items()}

    def block_outputs(self) -> list[str]:
        """Module names of the residual blocks, from the input: `layer1.0` ... `layer3.{n-1}`."""
        return [name for name, _ in self._blocks()]

    def block_for_paper_layer(self, paper_layer: int) -> str:
        """The module whose output is "the activation at paper layer L": the residual block holding
        the layer (mapped to this depth by `paper_layer_to_local`); L = 1 -> the stem's output
        (`act1`, or `conv1` in pre-activation nets), L = 110 -> `fc` (the logits)."""
        local = paper_layer_to_local(paper_layer, self.depth)
        if local == 1:
            return "act1" if self.block_kind == "post" else "conv1"
        if local == self.depth:
            return "fc"
        return self._blocks()[local // 2 - 1][0]
