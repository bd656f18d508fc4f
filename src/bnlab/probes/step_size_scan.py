"""step_size_scan (E4, Fig. 3): r(η) = L_B(θ − η·d) / L_B(θ) on one minibatch, for log-spaced η.

d is the minibatch gradient g = ∇L_B(θ) (`direction="gradient"`, the paper's plain gradient step) or the
optimizer's actual update per unit lr (`direction="update"`: momentum and weight decay included, so
θ − lr·d is the step the trainer is about to take). Statistics: batch statistics by default (BN in
training mode on the same minibatch, running statistics restored afterwards).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from torch import nn

from bnlab.errors import UserError
from bnlab.probes.capture import guard
from bnlab.probes.context import ProbeContext
from bnlab.probes.norm_stats import NormStats, norm_stats_mode
from bnlab.probes.registry import register_probe
from bnlab.probes.result import ProbeResult
from bnlab.probes.update import batch_gradient, detached_params, losses_along, update_direction

DIRECTIONS = ("gradient", "update")


def default_etas(lo: float = 1e-5, hi: float = 1.0, n: int = 25) -> np.ndarray:
    """Log-spaced step sizes; Fig. 3 spans ~1e-5 … 0.2."""
    return np.logspace(np.log10(lo), np.log10(hi), n)


def eta_grid(etas: Sequence[float] | None) -> np.ndarray:
    """The step sizes of a probe's `etas=` option as floats (default: `default_etas()`)."""
    return default_etas() if etas is None else np.asarray(list(etas), dtype=float)


@register_probe(kind="data")
def step_size_scan(
    model: nn.Module,
    batches: Sequence[tuple],
    *,
    ctx: ProbeContext,
    etas: Sequence[float] | None = None,
    directions: Sequence[str] | None = None,
    norm_stats: NormStats = "batch",
    batch_index: int = 0,
) -> ProbeResult:
    """Minibatch loss ratio after a step of size eta along the gradient and the optimizer's update (E4).

    Relative minibatch loss after a step of size η along the gradient and along the optimizer's update.

    The gradient is recomputed on `batches[batch_index]` (the same minibatch the loss is evaluated on),
    so the probe also works at initialization when no `.grad` exists. directions: "gradient" and/or
    "update" (the optimizer's step; needs `ctx.optimizer`); default both with an optimizer, else "gradient".
    """
    if directions is None:
        directions = DIRECTIONS if ctx.optimizer is not None else ("gradient",)
    bad = [d for d in directions if d not in DIRECTIONS]
    if bad:
        raise UserError(f"unknown step_size_scan directions {bad}; choose from {list(DIRECTIONS)}")
    if not batches:
        raise UserError("step_size_scan needs at least one (inputs, targets) batch")
    grid = eta_grid(etas)
    if grid.size == 0 or np.any(grid < 0):
        raise UserError("step_size_scan etas must be a non-empty list of non-negative step sizes")
    x, y = batches[batch_index]
    rows: list[dict] = []
    arrays: dict[str, np.ndarray] = {"eta": grid}
    with guard(model), norm_stats_mode(model, norm_stats) as stats:
        grads, loss0 = batch_gradient(model, x, y, ctx.loss_fn)
        base = detached_params(model)
        dirs = {}
        for d in directions:
            if d == "gradient":
                dirs[d] = grads
            elif ctx.optimizer is None:
                raise UserError(
                    "step_size_scan direction 'update' needs ctx.optimizer; pass directions=['gradient']"
                )
            else:
                dirs[d] = update_direction(ctx.optimizer, model, grads)
        for d, vec in dirs.items():
            losses = losses_along(model, x, y, base, vec, -grid, ctx.loss_fn)  # θ − η·d
            ratio = losses / loss0
            arrays[f"ratio_{d}"] = ratio
            arrays[f"loss_{d}"] = losses
            for eta, r, loss in zip(grid, ratio, losses):
                common = {"probe": "step_size_scan", "layer": "model", "direction": d, "eta": float(eta)}
                rows.append({**common, "metric": "ratio", "value": float(r)})
                rows.append({**common, "metric": "loss", "value": float(loss)})
    return ProbeResult.from_rows(
        rows, arrays, norm_stats=stats, step=ctx.step, lr=ctx.lr, loss0=loss0, batch_index=batch_index
    )
