"""Rank of the minibatch representation after each block at initialization (E14, Daneshmand et al. 2020)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from torch import Tensor, nn

from bnlab.errors import UserError
from bnlab.probes.activation_moments import forward_block_outputs
from bnlab.probes.capture import LossFn, paper_layer_map, paper_layer_of
from bnlab.probes.norm_stats import NormStats
from bnlab.probes.registry import register_probe
from bnlab.probes.result import ProbeResult, metric_rows


def rank_metrics(s: np.ndarray, rank_rtol: float, soft_rtol: float) -> dict[str, float]:
    """From singular values `s` (descending): `rank` (count of σ_i > rank_rtol·σ₁), `stable_rank`
    (Σσ_i² / σ₁² = ‖H‖_F² / ‖H‖₂²; NaN for H = 0), `soft_rank` (count of σ_i > soft_rtol·σ₁), and the
    tolerance used (`rank_rtol`)."""
    s1 = float(s[0]) if len(s) else 0.0
    if s1 == 0.0:
        return {"rank": 0.0, "stable_rank": float("nan"), "soft_rank": 0.0, "rank_rtol": rank_rtol}
    return {
        "rank": float(np.sum(s > rank_rtol * s1)),
        "stable_rank": float(np.sum((s / s1) ** 2)),
        "soft_rank": float(np.sum(s > soft_rtol * s1)),
        "rank_rtol": rank_rtol,
    }


@register_probe
def representation_rank(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor | None = None,
    *,
    loss_fn: LossFn | None = None,
    modules: Iterable[str | nn.Module] | None = None,
    norm_stats: NormStats = "batch",
    soft_rtol: float = 1e-3,
    rank_rtol: float | None = None,
) -> ProbeResult:
    """Per block output: rank, stable rank and soft rank of the minibatch representation B x features (E14).

    For each block output (`modules=`, else the model's `block_outputs()`, else the outermost modules
    called in the forward pass), the representation matrix H (B × features: every non-batch dim
    flattened) and its singular values σ₁ ≥ σ₂ ≥ … computed in float64 (array `<layer>/sv`). Metrics:
    `rank`, the numerical rank: the count of σ_i > rank_rtol·σ₁, with rank_rtol by default
    max(B, features)·ε of the activations' dtype (NumPy's `matrix_rank` convention at the precision
    the network computed in: 2.4e-4 for B = 128 × 2048 features in float32); `stable_rank`
    ‖H‖_F² / ‖H‖₂² = Σσ_i²/σ₁² (1 for a rank-one H, at most min(B, features)); `soft_rank`, the count of
    σ_i > soft_rtol·σ₁ (Daneshmand et al.'s soft rank, default 1e-3); `rank_rtol` records the tolerance.
    H is not centred: a common offset shared by every example is a direction of collapse. Forward only."""
    if not 0 < soft_rtol < 1:
        raise UserError(f"representation_rank: soft_rtol must lie in (0, 1), got {soft_rtol}")
    if rank_rtol is not None and not 0 < rank_rtol < 1:
        raise UserError(f"representation_rank: rank_rtol must lie in (0, 1), got {rank_rtol}")
    if inputs.shape[0] < 2:
        raise UserError("representation_rank needs a minibatch of at least 2 examples")
    stats, blocks = forward_block_outputs(model, inputs, modules, norm_stats)
    paper = paper_layer_map(model)
    rows, arrays = [], {}
    for n, y in blocks:
        y = y.detach()
        h = y.reshape(y.shape[0], -1)
        tol = rank_rtol
        if tol is None:
            eps = torch.finfo(y.dtype).eps if y.dtype.is_floating_point else torch.finfo(torch.float32).eps
            tol = min(max(h.shape) * eps, 0.5)
        s = torch.linalg.svdvals(h.double()).cpu().numpy()
        arrays[f"{n}/sv"] = s
        rows += metric_rows(
            "representation_rank", n, paper_layer_of(n, paper), rank_metrics(s, tol, soft_rtol)
        )
    return ProbeResult.from_rows(rows, arrays, norm_stats=stats)
