"""gradient_spectrum (E9): singular values of each Conv2d's weight gradient and of its activations."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from torch import Tensor, nn

from bnlab.errors import UserError
from bnlab.probes.capture import LossFn, forward_captured, guard, loss_value, paper_layer_map, select_layers
from bnlab.probes.norm_stats import NormStats, norm_stats_mode
from bnlab.probes.registry import register_probe
from bnlab.probes.result import ProbeResult, metric_rows
from bnlab.probes.weight_grads import weight_grads


def spectrum_metrics(s: np.ndarray) -> dict[str, float]:
    """top1_share σ₁²/Σσ², stable_rank ‖A‖_F²/‖A‖₂², effective_rank exp(H(σ/Σσ)) (Roy & Vetterli 2007)."""
    s2 = s**2
    if s2.sum() <= 0:
        return {"top1_share": float("nan"), "stable_rank": float("nan"), "effective_rank": float("nan")}
    p = s / s.sum()
    p = p[p > 0]
    return {
        "top1_share": float(s2[0] / s2.sum()),
        "stable_rank": float(s2.sum() / s2[0]),
        "effective_rank": float(np.exp(-np.sum(p * np.log(p)))),
    }


@register_probe
def gradient_spectrum(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    *,
    loss_fn: LossFn | None = None,
    layers: Iterable[str | int] | None = None,
    activation: str = "input",
    norm_stats: NormStats = "batch",
) -> ProbeResult:
    """Singular values, stable and effective rank of each conv's weight gradient and input activations (E9).

    Singular values of each Conv2d's weight gradient reshaped C_out × (C_in/groups·k·k) (`matrix` =
    gradient) and of its channel-centered activation matrix C × (B·H·W) (`matrix` = activation; the conv's
    input by default — the activations the kernel multiplies — or `activation="output"`). Metrics per matrix:
    top1_share, stable_rank, effective_rank. Arrays `<layer>/gradient_sv`, `<layer>/activation_sv`."""
    if activation not in ("input", "output"):
        raise UserError(f"activation must be 'input' or 'output', not {activation!r}")
    mods = select_layers(model, layers, (nn.Conv2d,))
    with guard(model), norm_stats_mode(model, norm_stats) as stats:
        cap, out = forward_captured(model, inputs, mods)
        grads = weight_grads(loss_value(out, targets, loss_fn), mods)
    paper = paper_layer_map(model)
    rows, arrays = [], {}
    for n, m in mods:
        gm = grads[n].detach().reshape(m.out_channels, -1)
        act = (cap.inputs[n] if activation == "input" else cap.outputs[n].detach()).transpose(0, 1)
        a = act.reshape(act.shape[0], -1)
        a = a - a.mean(1, keepdim=True)
        for kind, mat in (("gradient", gm), ("activation", a)):
            s = torch.linalg.svdvals(mat.double()).cpu().numpy()
            arrays[f"{n}/{kind}_sv"] = s
            rows += metric_rows("gradient_spectrum", n, paper.get(n), spectrum_metrics(s), matrix=kind)
    return ProbeResult.from_rows(rows, arrays, norm_stats=stats, activation=activation)
