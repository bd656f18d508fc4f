"""Conv2d contractions shared by kernel_alignment and per-example gradients.

`conv_input` turns a conv's input into (tensor, zero padding still to apply): zero padding is left to the
kernels (no copy), other padding modes and 'same' are applied explicitly; stride, dilation and groups are
kept. Summands are never materialized whole: per-example
sums are one grouped weight-gradient convolution (batch folded into the groups), per-position sums one
batched matmul over gathered patches; both chunked to bound memory.
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


Pad = tuple[int, int]


class Scratch:
    """Reusable flat buffers. A fresh multi-MB tensor costs a page fault per 4 KiB on first touch (the
    allocator hands large blocks back to the OS), which made |x| cost as much as a convolution; probes that
    loop over layers take their temporaries from here instead."""

    def __init__(self) -> None:
        self._bufs: dict[str, Tensor] = {}

    def get(self, key: str, shape: tuple[int, ...], like: Tensor, *, zero: bool = False) -> Tensor:
        n = 1
        for d in shape:
            n *= d
        buf = self._bufs.get(key)
        if buf is None or buf.numel() < n or buf.dtype != like.dtype or buf.device != like.device:
            buf = torch.empty(
                max(n, buf.numel() if buf is not None else 0), dtype=like.dtype, device=like.device
            )
            self._bufs[key] = buf
        view = buf[:n].view(shape)
        return view.zero_() if zero else view

    def abs(self, key: str, t: Tensor) -> Tensor:
        return torch.abs(t, out=self.get(key, tuple(t.shape), t))


def conv_input(conv: nn.Conv2d, x: Tensor) -> tuple[Tensor, Pad]:
    """(x, conv.padding) for zero padding given as numbers; else (explicitly padded x, (0, 0))."""
    if conv.padding_mode == "zeros" and not isinstance(conv.padding, str):
        return x, (int(conv.padding[0]), int(conv.padding[1]))
    return padded_input(conv, x), (0, 0)


def weight_grad(conv: nn.Conv2d, x: Tensor, g: Tensor, pad: Pad = (0, 0)) -> Tensor:
    """Σ_{b,x,y} g_{b,o,x,y} · x̃_{b,i,x·s+x'·δ, y·s+y'·δ} (x̃ = x zero-padded by `pad`): the weight gradient."""
    return torch.nn.grad.conv2d_weight(
        x, conv.weight.shape, g, stride=conv.stride, padding=pad, dilation=conv.dilation, groups=conv.groups
    )


def per_example_weight_grads(conv: nn.Conv2d, x: Tensor, g: Tensor) -> Tensor:
    """[B, *weight.shape]: Σ_{x,y} g_b · patch_b for each example b. One grouped weight-gradient convolution
    with the batch folded into the groups (B·groups groups), chunked over b; ~5x faster on CPU than
    unfold + matmul."""
    xi, pad = conv_input(conv, x)
    return torch.cat([_grouped_chunk(conv, xc, gc, pad) for xc, gc in _batch_chunks(conv, xi, g)])


def _batch_chunks(conv: nn.Conv2d, xp: Tensor, g: Tensor) -> list[tuple[Tensor, Tensor]]:
    per_example = xp[0].numel() + g[0].numel() + conv.weight.numel()
    step = max(1, CHUNK_ELEMENTS // max(per_example, 1))
    return [(xp[s : s + step], g[s : s + step]) for s in range(0, xp.shape[0], step)]


def _grouped_chunk(conv: nn.Conv2d, xp: Tensor, g: Tensor, pad: Pad) -> Tensor:
    b = xp.shape[0]
    w = torch.nn.grad.conv2d_weight(
        xp.reshape(1, -1, *xp.shape[2:]),
        (b * conv.out_channels, *conv.weight.shape[1:]),
        g.reshape(1, -1, *g.shape[2:]),
        stride=conv.stride,
        padding=pad,
        dilation=conv.dilation,
        groups=b * conv.groups,
    )
    return w.view(b, *conv.weight.shape)


def spatial_abs_sum(conv: nn.Conv2d, x: Tensor, g: Tensor, pad: Pad = (0, 0)) -> Tensor:
    """Σ_b Σ_entries |Σ_{x,y} d|: the per-example weight gradients' absolute sum (chunked over b)."""
    total = torch.zeros((), dtype=torch.float64, device=g.device)
    for xc, gc in _batch_chunks(conv, x, g):
        total += _grouped_chunk(conv, xc, gc, pad).abs().sum().double()
    return total


def batch_abs_sum(
    conv: nn.Conv2d, x: Tensor, g: Tensor, pad: Pad = (0, 0), scratch: Scratch | None = None
) -> Tensor:
    """Σ_{x,y} Σ_entries |Σ_b d|: per output position p the batch-summed outer product M_p = Σ_b g_b,p ⊗ patch_b,p,
    as batched matmuls contracting over b (chunked over positions)."""
    if conv.stride == (1, 1):
        return _batch_abs_sum_stride1(conv, x, g, pad, scratch or Scratch())
    if any(pad):
        x = F.pad(x, [pad[1], pad[1], pad[0], pad[0]])
    return _batch_abs_sum_gather(conv, x, g)


def _batch_abs_sum_stride1(conv: nn.Conv2d, x: Tensor, g: Tensor, pad: Pad, scratch: Scratch) -> Tensor:
    """Stride 1, no copies of patches: with the input stored as (H, W, C, B) and positions counted along whole
    padded rows (p' = x·W_p + y, the W_p − W_o extra columns get a zero output gradient), the patch entries
    of kernel offset (i, j) for every p' form one strided view. With dilation 1 and one group the kw offsets
    of a kernel row merge into the same view, so each kernel row is one batched matmul."""
    b, c, h, w = x.shape
    hp, wp = h + 2 * pad[0], w + 2 * pad[1]
    _, o, ho, wo = g.shape
    groups, (kh, kw), (dh, dw) = conv.groups, conv.kernel_size, conv.dilation
    cg, og = c // groups, o // groups
    cb = c * b
    # zero border and tail: views of the last rows run past the grid
    flat = scratch.get("batch_x", (hp * wp * cb + kw * dw * cb,), x, zero=True)
    grid = flat[: hp * wp * cb].view(hp, wp, c, b)
    grid[pad[0] : pad[0] + h, pad[1] : pad[1] + w].copy_(x.permute(2, 3, 1, 0))
    gp = scratch.get("batch_g", (ho, wp, o, b), g, zero=True)
    gp[:, :wo] = g.permute(2, 3, 1, 0)
    positions = ho * wp
    gp = gp.view(positions, o, b)
    merged = dw == 1 and groups == 1
    # (offset within flat, number of input channels·offsets in the view) for each matmul
    views = (
        [(i * dh * wp * cb, 0, kw * c) for i in range(kh)]
        if merged
        else [
            ((i * dh * wp + j * dw) * cb, grp, cg)
            for i in range(kh)
            for j in range(kw)
            for grp in range(groups)
        ]
    )
    width = views[0][2]
    step = max(1, CHUNK_ELEMENTS // max(og * width + b * (og + width), 1))
    total = torch.zeros((), dtype=torch.float64, device=g.device)
    for base, grp, n in views:
        for s in range(0, positions, step):
            rows = min(step, positions - s)
            xv = flat.as_strided((rows, b, n), (cb, 1, b), base + s * cb + grp * cg * b)
            gv = gp[s : s + rows, grp * og : (grp + 1) * og]
            total += torch.bmm(gv, xv).abs().sum().double()
    return total


def _batch_abs_sum_gather(conv: nn.Conv2d, xp: Tensor, g: Tensor) -> Tensor:
    """Any stride: patches gathered from a (H, W, B, C) copy of the input by one strided view (entry order
    inside a row does not matter for the sum), one batched matmul [G, p, O_g, B] @ [G, p, B, k·k·C_g] per
    chunk of output rows."""
    b, c, hp, wp = xp.shape
    _, o, ho, wo = g.shape
    groups, (kh, kw), (sh, sw), (dh, dw) = conv.groups, conv.kernel_size, conv.stride, conv.dilation
    cg, og = c // groups, o // groups
    xh = xp.permute(2, 3, 0, 1).contiguous()  # [Hp, Wp, B, C]
    s_h, s_w, s_b, s_c = xh.stride()
    # patches[x, y, b, i, j, grp, cc] = xp[b, grp·cg + cc, x·sh + i·dh, y·sw + j·dw]
    patches = xh.as_strided(
        (ho, wo, b, kh, kw, groups, cg), (sh * s_h, sw * s_w, s_b, dh * s_h, dw * s_w, cg * s_c, s_c)
    )
    gh = g.permute(1, 2, 3, 0).reshape(groups, og, ho, wo, b).permute(0, 2, 3, 1, 4)  # [G, Ho, Wo, Og, B]
    per_row = wo * b * (kh * kw * c + o) + wo * o * kh * kw * cg
    step = max(1, CHUNK_ELEMENTS // max(per_row, 1))
    total = torch.zeros((), dtype=torch.float64, device=g.device)
    for r in range(0, ho, step):
        rows = min(step, ho - r)
        pc = patches[r : r + rows].permute(5, 0, 1, 2, 3, 4, 6).reshape(groups, rows * wo, b, kh * kw * cg)
        gc = gh[:, r : r + rows].reshape(groups, rows * wo, og, b)
        total += torch.matmul(gc, pc).abs().sum().double()
    return total
