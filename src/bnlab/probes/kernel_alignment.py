"""Kernel-gradient alignment (E8, Table 1): are the summands of ∂L/∂K input-independent?

For a conv with input I, output O: d^{b,x,y}_{o,i,x',y'} = ∂L/∂O_{b,o,x,y} · I_{b,i,x·s+x'·δ,y·s+y'·δ}
(stride s, dilation δ, input padded as the conv pads it; groups pair o with its group's inputs).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import torch
from torch import Tensor, nn

from bnlab.errors import UserError
from bnlab.probes.capture import (
    LossFn,
    forward_captured,
    guard,
    loss_value,
    paper_layer_map,
    select_layers,
)
from bnlab.probes.conv import Scratch, batch_abs_sum, conv_input, spatial_abs_sum, weight_grad
from bnlab.probes.norm_stats import NormStats, norm_stats_mode
from bnlab.probes.registry import register_probe
from bnlab.probes.result import ProbeResult, metric_rows

REDUCES = ("spatial", "batch", "all")


@register_probe
def kernel_alignment(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    *,
    loss_fn: LossFn | None = None,
    layers: Iterable[str | int] | None = None,
    reduce: Iterable[str] = REDUCES,
    norm_stats: NormStats = "batch",
) -> ProbeResult:
    """Per conv: sum of |summands| over sum of |sums| of the kernel gradient, reduced over space, batch or both (E8).

    For every Conv2d (or `layers=`), key column `reduce` ∈ {spatial, batch, all} (the indices summed inside
    the absolute value; `reduce=` picks a subset):
      sum_abs = Σ_entries Σ_{b,x,y} |d|   (the same for every reduce; computed as the conv weight-gradient
                of |I| and |∂L/∂O|, since |g·I| = |g|·|I|)
      abs_sum = Σ_entries Σ_{non-reduced} |Σ_{reduced} d|
      ratio   = sum_abs / abs_sum          (≥ 1; large = summands cancel = input-dependent)
    and for `all` the quartiles entry_ratio_q25/q50/q75 over kernel entries of Σ|d| / |Σd|.
    Cost: one forward+backward to the conv outputs, then per layer two weight-gradient convolutions
    (sum_abs, all), a grouped one for spatial (per example) and a batched matmul for batch (per position)."""
    reduce = tuple(reduce)
    bad = [r for r in reduce if r not in REDUCES]
    if bad or not reduce:
        raise UserError(f"reduce must be a subset of {REDUCES}, got {reduce}")
    mods = select_layers(model, layers, (nn.Conv2d,))
    with guard(model), norm_stats_mode(model, norm_stats) as stats:
        cap, out = forward_captured(model, inputs, mods)
        loss = loss_value(out, targets, loss_fn)
        # Each layer is reduced inside a hook on its output gradient during the one backward pass, and its
        # ∂L/∂O dropped right after: keeping all of them alive costs more (fresh pages) than the reductions.
        scratch = Scratch()
        per_layer: dict[str, tuple[Tensor, dict[str, float]]] = {}

        def reducer(n: str, conv: nn.Conv2d) -> Callable[[Tensor], None]:
            def hook(g: Tensor) -> None:
                with torch.no_grad():
                    per_layer[n] = _reduce_layer(conv, cap.inputs.pop(n), g, reduce, scratch)

            return hook

        handles = [
            cap.outputs[n].register_hook(reducer(n, m)) for n, m in mods if cap.outputs[n].requires_grad
        ]
        try:
            # the weight gradients ride along in the same backward (the "all" sums)
            want = [m.weight for _, m in mods if m.weight.requires_grad]
            if not want:  # frozen kernels: differentiate w.r.t. the outputs so the hooks still fire
                want = [cap.outputs[n] for n, _ in mods if cap.outputs[n].requires_grad]
            got = iter(torch.autograd.grad(loss, want, allow_unused=True) if want else [])
            wgrads = [next(got) if m.weight.requires_grad else None for _, m in mods]
        finally:
            for h in handles:
                h.remove()
    paper = paper_layer_map(model)
    rows = []
    for (n, conv), wg in zip(mods, wgrads):
        if n not in per_layer:  # no gradient reaches this conv's output
            per_layer[n] = _reduce_layer(
                conv, cap.inputs[n], torch.zeros_like(cap.outputs[n]), reduce, scratch
            )
        per_entry_abs, sums = per_layer[n]
        sum_abs = float(per_entry_abs.sum(dtype=torch.float64))
        for r in reduce:
            extra: dict[str, float] = {}
            if r == "all":
                w = (wg if wg is not None else torch.zeros_like(conv.weight)).detach().abs()
                abs_sum = float(w.sum(dtype=torch.float64))
                with np.errstate(divide="ignore", invalid="ignore"):
                    ratios = (per_entry_abs.double() / w.double()).flatten().cpu().numpy()
                q = np.quantile(ratios, [0.25, 0.5, 0.75])
                extra = {"entry_ratio_q25": q[0], "entry_ratio_q50": q[1], "entry_ratio_q75": q[2]}
            else:
                abs_sum = sums[r]
            ratio = sum_abs / abs_sum if abs_sum > 0 else float("inf")
            values = {"sum_abs": sum_abs, "abs_sum": abs_sum, "ratio": ratio, **extra}
            rows += metric_rows("kernel_alignment", n, paper.get(n), values, reduce=r)
    return ProbeResult.from_rows(rows, {}, norm_stats=stats)


def _reduce_layer(
    conv: nn.Conv2d, x: Tensor, g: Tensor, reduce: tuple[str, ...], scratch: Scratch
) -> tuple[Tensor, dict[str, float]]:
    """Per-entry Σ_{b,x,y}|d| (weight gradient of |I| and |g|) and the spatial / batch absolute sums."""
    xi, pad = conv_input(conv, x)
    sums: dict[str, float] = {}
    if "spatial" in reduce:
        sums["spatial"] = float(spatial_abs_sum(conv, xi, g, pad))
    if "batch" in reduce:
        sums["batch"] = float(batch_abs_sum(conv, xi, g, pad, scratch))
    per_entry_abs = weight_grad(conv, scratch.abs("x", xi), scratch.abs("g", g), pad)
    return per_entry_abs, sums
