"""gradient_predictiveness (E13; Santurkar et al. 2018, Fig. 4): loss and gradient along the step.

At parameters θ, with d the minibatch gradient g = ∇L_B(θ) (`direction="gradient"`, default) or the
optimizer's update per unit lr (`direction="update"`), for each step size s of a grid:

  loss          L_B(θ − s·d)
  loss_change   L_B(θ − s·d) − L_B(θ)
  grad_change   ‖∇L_B(θ − s·d) − ∇L_B(θ)‖                  (gradient predictiveness; ℓ2 over all parameters)
  grad_change_rel   grad_change / ‖∇L_B(θ)‖
  beta          grad_change / ‖s·d‖                       (the secant smoothness along the step)

and per call: beta_max = max_s beta (the "effective β-smoothness"), loss_range = max − min of L_B over
{0} ∪ grid, grad_change_max, grad_norm ‖∇L_B(θ)‖, direction_norm ‖d‖, loss0, nonfinite (step sizes whose
loss or gradient is not finite; they are left out of the maxima and reported NaN).

Statistics (`norm_stats`): `batch` (default: every loss and gradient at θ − s·d uses the same minibatch's
own statistics, gradients through them, as in training), `frozen` or `running`. The grid: `etas` (absolute
step sizes) or `lr_multiples` (s = m × the step's lr, `ctx.step_lr`); default lr multiples 1/4 … 4 when the
lr is known, else absolute 1e-3 … 1. Parameters, `.grad`, buffers and the training flags are left as found.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call

from bnlab.errors import UserError
from bnlab.probes.capture import LossFn, guard, loss_value
from bnlab.probes.context import ProbeContext
from bnlab.probes.norm_stats import NormStats, norm_stats_mode
from bnlab.probes.registry import register_probe
from bnlab.probes.result import ProbeResult
from bnlab.probes.update import Params, batch_gradient, detached_params, displaced, update_direction

DIRECTIONS = ("gradient", "update")
DEFAULT_LR_MULTIPLES = (0.25, 0.5, 1.0, 2.0, 4.0)
DEFAULT_ETAS = (1e-3, 1e-2, 1e-1, 1.0)
PER_STEP = ("loss", "loss_change", "grad_change", "grad_change_rel", "beta")


def gradient_at(
    model: nn.Module, x: Tensor, y: Tensor, params: Params, loss_fn: LossFn | None
) -> tuple[Params, float]:
    """(∇L_B, L_B) at `params` (buffers and other parameters: the model's own) in the model's current mode."""
    leaves = {n: p.detach().requires_grad_(True) for n, p in params.items()}
    loss = loss_value(functional_call(model, leaves, (x,)), y, loss_fn)
    grads = torch.autograd.grad(loss, list(leaves.values()), allow_unused=True)
    out = {
        n: (g.detach() if g is not None else torch.zeros_like(p)) for (n, p), g in zip(leaves.items(), grads)
    }
    return out, float(loss.detach())


def norm(t: Params) -> float:
    """ℓ2 norm over every entry of a parameter dict, accumulated in float64."""
    return math.sqrt(sum(float((v.double() ** 2).sum()) for v in t.values()))


def step_grid(
    ctx: ProbeContext, etas: Sequence[float] | None, lr_multiples: Sequence[float] | None
) -> np.ndarray:
    """The step sizes s: `etas`, or `lr_multiples` × ctx.step_lr, or the defaults (module docstring)."""
    if etas is not None and lr_multiples is not None:
        raise UserError("gradient_predictiveness takes etas or lr_multiples, not both")
    lr = ctx.step_lr
    if etas is None and lr_multiples is None:
        lr_multiples = DEFAULT_LR_MULTIPLES if lr else None
        etas = None if lr else DEFAULT_ETAS
    if lr_multiples is not None:
        if not lr or lr <= 0:
            raise UserError(
                "gradient_predictiveness lr_multiples need the step's lr (ctx.lr or ctx.optimizer)"
            )
        grid = np.asarray(list(lr_multiples), dtype=float) * float(lr)
    else:
        grid = np.asarray(list(etas or []), dtype=float)
    if grid.size == 0 or not np.all(np.isfinite(grid)) or np.any(grid <= 0):
        raise UserError("gradient_predictiveness step sizes must be a non-empty list of positive numbers")
    return grid


@register_probe(kind="data")
def gradient_predictiveness(
    model: nn.Module,
    batches: Sequence[tuple],
    *,
    ctx: ProbeContext,
    etas: Sequence[float] | None = None,
    lr_multiples: Sequence[float] | None = None,
    direction: str = "gradient",
    norm_stats: NormStats = "batch",
    batch_index: int = 0,
) -> ProbeResult:
    """Loss, gradient change and effective beta-smoothness along the step, per step size (E13).

    Loss and gradient at θ − s·d on one minibatch for each step size s (module docstring)."""
    if direction not in DIRECTIONS:
        raise UserError(
            f"unknown gradient_predictiveness direction {direction!r}; choose from {list(DIRECTIONS)}"
        )
    if direction == "update" and ctx.optimizer is None:
        raise UserError(
            "gradient_predictiveness direction 'update' needs ctx.optimizer; use direction='gradient'"
        )
    if not batches:
        raise UserError("gradient_predictiveness needs at least one (inputs, targets) batch")
    grid = step_grid(ctx, etas, lr_multiples)
    x, y = batches[batch_index]
    per = {k: np.full(grid.size, np.nan) for k in PER_STEP}
    with guard(model), norm_stats_mode(model, norm_stats) as stats:
        g0, loss0 = batch_gradient(model, x, y, ctx.loss_fn)
        d = g0 if direction == "gradient" else update_direction(ctx.optimizer, model, g0)
        base = detached_params(model)
        g_norm, d_norm = norm(g0), norm(d)
        for i, s in enumerate(grid):
            g, loss = gradient_at(model, x, y, displaced(base, d, -float(s)), ctx.loss_fn)
            change = norm({n: g[n].double() - g0[n].double() for n in g})
            if not (math.isfinite(loss) and math.isfinite(change)):
                continue
            per["loss"][i], per["loss_change"][i] = loss, loss - loss0
            per["grad_change"][i] = change
            per["grad_change_rel"][i] = change / g_norm if g_norm > 0 else np.nan
            per["beta"][i] = change / (s * d_norm) if d_norm > 0 else np.nan
    ok = np.isfinite(per["loss"])
    losses = np.concatenate([[loss0], per["loss"][ok]])

    def top(a: np.ndarray) -> float:
        a = a[np.isfinite(a)]
        return float(a.max()) if a.size else float("nan")

    summary = {
        "beta_max": top(per["beta"]),
        "loss_range": float(losses.max() - losses.min()) if math.isfinite(loss0) else float("nan"),
        "grad_change_max": top(per["grad_change"]),
        "grad_norm": g_norm,
        "direction_norm": d_norm,
        "loss0": loss0,
        "nonfinite": float((~ok).sum()),
    }
    common = {"probe": "gradient_predictiveness", "layer": "model", "direction": direction}
    rows = [{**common, "metric": k, "value": v, "eta": float("nan")} for k, v in summary.items()]
    for i, s in enumerate(grid):
        rows += [{**common, "metric": k, "value": float(per[k][i]), "eta": float(s)} for k in PER_STEP]
    arrays = {"eta": grid, **per}
    return ProbeResult.from_rows(
        rows, arrays, norm_stats=stats, step=ctx.step, lr=ctx.lr, loss0=loss0, batch_index=batch_index
    )
