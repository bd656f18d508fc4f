"""Class bias of the output at initialization (E7, Fig. 6)."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from bnlab.errors import UserError
from bnlab.probes.capture import LossFn, guard, loss_value
from bnlab.probes.norm_stats import NormStats, norm_stats_mode
from bnlab.probes.registry import register_probe
from bnlab.probes.result import ProbeResult


def class_bias_metrics(p: np.ndarray) -> dict[str, float]:
    """From softmax outputs p [B, K]: top_class_share, class_entropy (nats) of the predicted-class histogram,
    max_mean_prob_gap = max_k |mean_n p_nk − 1/K|, input_dependence = Σ_k Var_n p_nk / Σ_k mean_n p_nk²
    (0: the same output for every input)."""
    b, k = p.shape
    hist = np.bincount(p.argmax(1), minlength=k) / b
    nz = hist[hist > 0]
    return {
        "top_class_share": float(hist.max()),
        "class_entropy": float(-np.sum(nz * np.log(nz))),
        "max_mean_prob_gap": float(np.abs(p.mean(0) - 1.0 / k).max()),
        "input_dependence": float(p.var(0).sum() / (p**2).mean(0).sum()),
    }


@register_probe
def output_bias(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    *,
    loss_fn: LossFn | None = None,
    norm_stats: NormStats = "batch",
) -> ProbeResult:
    """Logit gradient dL/dz and class-bias metrics of the softmax outputs: do all inputs favour one class (E7).

    The B × K logit gradient ∂L/∂z (array `dL_dz`; softmax outputs in `probs`) and class-bias metrics
    (see `class_bias_metrics`). Layer "output"."""
    with guard(model), norm_stats_mode(model, norm_stats) as stats:
        with torch.no_grad():
            z = model(inputs).detach().requires_grad_()  # ∂L/∂z needs no backward through the model
    if z.dim() != 2:
        raise UserError(f"output_bias needs logits of shape [B, K], got {tuple(z.shape)}")
    with torch.enable_grad():
        (dz,) = torch.autograd.grad(loss_value(z, targets, loss_fn), [z])
    p = torch.softmax(z.detach().double(), dim=1).cpu().numpy()
    rows = [
        {"probe": "output_bias", "layer": "output", "paper_layer": None, "metric": k, "value": v}
        for k, v in class_bias_metrics(p).items()
    ]
    arrays = {"dL_dz": dz.detach().double().cpu().numpy(), "probs": p}
    return ProbeResult.from_rows(rows, arrays, norm_stats=stats)
