"""Kernel-gradient alignment (E8, Table 1): are the summands of ∂L/∂K input-independent?

For a conv with input I, output O: d^{b,x,y}_{o,i,x',y'} = ∂L/∂O_{b,o,x,y} · I_{b,i,x·s+x'·δ,y·s+y'·δ}
(stride s, dilation δ, input padded as the conv pads it; groups pair o with its group's inputs).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from torch import Tensor, nn

from bnlab.errors import UserError
from bnlab.probes.capture import (
    LossFn,
    NormStats,
    capture,
    guard,
    loss_value,
    paper_layer_map,
    select_layers,
    set_norm_stats,
)
from bnlab.probes.conv import batch_abs_sum, padded_input, spatial_abs_sum, weight_grad
from bnlab.probes.registry import register_probe
from bnlab.probes.result import ProbeResult

REDUCES = ("spatial", "batch", "all")


@register_probe("kernel_alignment")
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
    """For every Conv2d (or `layers=`), key column `reduce` ∈ {spatial, batch, all} (the indices summed inside
    the absolute value; `reduce=` picks a subset):
      sum_abs = Σ_entries Σ_{b,x,y} |d|   (the same for every reduce; computed as the conv weight-gradient
                of |I| and |∂L/∂O|, since |g·I| = |g|·|I|)
      abs_sum = Σ_entries Σ_{non-reduced} |Σ_{reduced} d|
      ratio   = sum_abs / abs_sum          (≥ 1; large = summands cancel = input-dependent)
    and for `all` the quartiles entry_ratio_q25/q50/q75 over kernel entries of Σ|d| / |Σd|.
    Cost: one forward+backward to the conv outputs, then per layer two weight-gradient convolutions
    (sum_abs, all) and unfold+matmul contractions for spatial (per example) and batch (per position)."""
    reduce = tuple(reduce)
    bad = [r for r in reduce if r not in REDUCES]
    if bad or not reduce:
        raise UserError(f"reduce must be a subset of {REDUCES}, got {reduce}")
    mods = select_layers(model, layers, (nn.Conv2d,))
    with guard(model):
        norm_mode = set_norm_stats(model, norm_stats)
        with capture(mods) as cap:
            loss = loss_value(model(inputs), targets, loss_fn)
        live = [n for n, _ in mods if cap.outputs[n].requires_grad]
        gouts = dict(zip(live, torch.autograd.grad(loss, [cap.outputs[n] for n in live], allow_unused=True)))
    paper = paper_layer_map(model)
    rows = []
    with torch.no_grad():
        for n, conv in mods:
            g = gouts.get(n)
            if g is None:
                g = torch.zeros_like(cap.outputs[n])
            xp = padded_input(conv, cap.inputs[n])
            per_entry_abs = weight_grad(conv, xp.abs(), g.abs())
            sum_abs = float(per_entry_abs.sum(dtype=torch.float64))
            for r in reduce:
                extra: dict[str, float] = {}
                if r == "all":
                    w = weight_grad(conv, xp, g).abs()
                    abs_sum = float(w.sum(dtype=torch.float64))
                    ratios = (per_entry_abs.double() / w.double()).flatten().cpu().numpy()
                    q = np.quantile(ratios, [0.25, 0.5, 0.75])
                    extra = {"entry_ratio_q25": q[0], "entry_ratio_q50": q[1], "entry_ratio_q75": q[2]}
                elif r == "spatial":
                    abs_sum = float(spatial_abs_sum(conv, xp, g))
                else:
                    abs_sum = float(batch_abs_sum(conv, xp, g))
                ratio = sum_abs / abs_sum if abs_sum > 0 else float("inf")
                values = {"sum_abs": sum_abs, "abs_sum": abs_sum, "ratio": ratio, **extra}
                for metric, value in values.items():
                    rows.append(
                        {
                            "probe": "kernel_alignment",
                            "layer": n,
                            "paper_layer": paper.get(n),
                            "reduce": r,
                            "metric": metric,
                            "value": float(value),
                        }
                    )
    return ProbeResult.from_rows(rows, {}, norm_mode=norm_mode)
