"""Conv2d contractions shared by kernel_alignment and per-example gradients.

Every helper first pads the input explicitly (any padding mode, 'same'/'valid' strings), so the rest works
with padding 0; stride, dilation and groups are kept. Summands are never materialized whole: per-example
and per-position sums are batched matmuls over unfolded inputs, chunked to bound memory.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# Elements of one chunk of an unfolded/contracted tensor: 2**24 floats = 64 MiB in float32.
CHUNK_ELEMENTS = 2**24


def padded_input(conv: nn.Conv2d, x: Tensor) -> Tensor:
    """The conv's input after its own padding, so that conv(x) == F.conv2d(padded, w, stride, 0, dilation)."""
    if isinstance(conv.padding, str):
        if conv.padding == "valid":
            return x
        # 'same' (stride 1 only): total pad dilation*(k-1), the extra pixel on the right/bottom, as in torch
        pads: list[int] = []
        for d, k in zip(reversed(conv.dilation), reversed(conv.kernel_size)):
            total = d * (k - 1)
            pads += [total // 2, total - total // 2]
    else:
        pads = [p for p in reversed(conv.padding) for _ in range(2)]
    if not any(pads):
        return x
    mode = "constant" if conv.padding_mode == "zeros" else conv.padding_mode
    return F.pad(x, pads, mode=mode)


def weight_grad(conv: nn.Conv2d, xp: Tensor, g: Tensor) -> Tensor:
    """Σ_{b,x,y} g_{b,o,x,y} · xp_{b,i,x·s+x'·d, y·s+y'·d}: the conv's weight gradient from a padded input."""
    return torch.nn.grad.conv2d_weight(
        xp, conv.weight.shape, g, stride=conv.stride, padding=0, dilation=conv.dilation, groups=conv.groups
    )


def unfold_grouped(conv: nn.Conv2d, xp: Tensor) -> Tensor:
    """[B, groups, C_in/groups·kh·kw, L] patches (L output positions); rows ordered like the weight's
    flattened (C_in/groups, kh, kw)."""
    u = F.unfold(xp, conv.kernel_size, dilation=conv.dilation, padding=0, stride=conv.stride)
    b, _, length = u.shape
    return u.view(b, conv.groups, -1, length)


def grouped_grad(conv: nn.Conv2d, g: Tensor) -> Tensor:
    """Output gradient as [B, groups, C_out/groups, L]."""
    b, c = g.shape[:2]
    return g.reshape(b, conv.groups, c // conv.groups, -1)


def per_example_weight_grads(conv: nn.Conv2d, x: Tensor, g: Tensor) -> Tensor:
    """[B, *weight.shape]: Σ_{x,y} g_b · patch_b for each example b (chunked over b)."""
    xp = padded_input(conv, x)
    b = x.shape[0]
    out = torch.empty((b, *conv.weight.shape), dtype=g.dtype, device=g.device)
    flat = out.view(b, conv.groups, conv.out_channels // conv.groups, -1)
    per_example = conv.in_channels * conv.kernel_size[0] * conv.kernel_size[1] * g[0, 0].numel()
    step = max(1, CHUNK_ELEMENTS // max(per_example, 1))
    for s in range(0, b, step):
        u = unfold_grouped(conv, xp[s : s + step])
        gg = grouped_grad(conv, g[s : s + step])
        torch.matmul(gg, u.transpose(-1, -2), out=flat[s : s + step])
    return out


def spatial_abs_sum(conv: nn.Conv2d, xp: Tensor, g: Tensor) -> Tensor:
    """Σ_b Σ_entries |Σ_{x,y} d|: the per-example weight gradients' absolute sum (chunked over b)."""
    b = xp.shape[0]
    per_example = (
        conv.weight.numel() + conv.in_channels * conv.kernel_size[0] * conv.kernel_size[1] * g[0, 0].numel()
    )
    step = max(1, CHUNK_ELEMENTS // max(per_example, 1))
    total = torch.zeros((), dtype=torch.float64, device=g.device)
    for s in range(0, b, step):
        u = unfold_grouped(conv, xp[s : s + step])
        gg = grouped_grad(conv, g[s : s + step])
        total += torch.matmul(gg, u.transpose(-1, -2)).abs().sum(dtype=torch.float64)
    return total


def batch_abs_sum(conv: nn.Conv2d, xp: Tensor, g: Tensor) -> Tensor:
    """Σ_{x,y} Σ_entries |Σ_b d|: per output position l, the batch-summed outer product g[:, :, l]ᵀ U[:, :, l]
    as one batched matmul [l, O_g, B] @ [l, B, C_g·k·k] per group (chunked over positions)."""
    u = unfold_grouped(conv, xp)  # [B, G, Cg·k·k, L]
    gg = grouped_grad(conv, g)  # [B, G, Og, L]
    b, groups, cgkk, length = u.shape
    og = gg.shape[2]
    per_position = og * cgkk + b * (cgkk + og)
    step = max(1, CHUNK_ELEMENTS // max(per_position, 1))
    total = torch.zeros((), dtype=torch.float64, device=g.device)
    for grp in range(groups):
        for s in range(0, length, step):
            a = gg[:, grp, :, s : s + step].permute(2, 1, 0).contiguous()  # [l, Og, B]
            c = u[:, grp, :, s : s + step].permute(2, 0, 1).contiguous()  # [l, B, Cg·k·k]
            total += torch.bmm(a, c).abs().sum(dtype=torch.float64)
    return total
