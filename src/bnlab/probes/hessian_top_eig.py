"""hessian_top_eig: the top Hessian eigenvalue λ_max of the minibatch loss, with batch statistics.

Hessian-vector products by double backward (Pearlmutter), in the norm mode the model trains in — BN in
training mode, so the Hessian includes the dependence of the batch statistics on θ (PyHessian uses eval
mode). λ_max comes from Lanczos (scipy's ARPACK `eigsh`, largest algebraic) or power iteration (largest
magnitude), and is set against the stability threshold of SGD with heavy-ball momentum β on a quadratic:
lr·λ < 2(1 + β) (torch's nesterov form: lr·λ < 2(1 + β)/(1 + 2β)).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
import torch
from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh
from torch import Tensor, nn

from bnlab.errors import UserError
from bnlab.probes.capture import LossFn, guard, loss_value, trainable
from bnlab.probes.context import ProbeContext
from bnlab.probes.norm_stats import NormStats, norm_stats_mode
from bnlab.probes.registry import register_probe
from bnlab.probes.result import ProbeResult
from bnlab.probes.update import optimizer_momentum


def stability_limit(momentum: float = 0.0, nesterov: bool = False) -> float:
    """Largest lr·λ for which SGD with momentum β is stable on a quadratic of curvature λ."""
    if nesterov:
        return 2 * (1 + momentum) / (1 + 2 * momentum)
    return 2 * (1 + momentum)


def hvp_operator(
    model: nn.Module, batches: Sequence[tuple], loss_fn: LossFn | None = None
) -> tuple[Callable[[Tensor], Tensor], int]:
    """v ↦ H·v for the mean of the batches' losses, on flat float vectors; and the parameter count.

    The double-backward graph of each batch is built once and reused (call inside `guard`).
    """
    params = list(trainable(model).values())
    graphs = []
    for x, y in batches:
        loss = loss_value(model(x), y, loss_fn)
        grads = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
        graphs.append([g if g is not None else torch.zeros_like(p) for g, p in zip(grads, params)])
    sizes = [p.numel() for p in params]

    def hvp(v: Tensor) -> Tensor:
        vs = [c.view_as(p).to(p.dtype) for c, p in zip(torch.split(v, sizes), params)]
        total = torch.zeros(sum(sizes), dtype=params[0].dtype, device=params[0].device)
        for grads in graphs:
            hv = torch.autograd.grad(grads, params, grad_outputs=vs, retain_graph=True, allow_unused=True)
            total += torch.cat(
                [(h if h is not None else torch.zeros_like(p)).reshape(-1) for h, p in zip(hv, params)]
            )
        return (total / len(graphs)).detach()

    return hvp, sum(sizes)


def top_eigenvalue(
    hvp: Callable[[Tensor], Tensor],
    n: int,
    *,
    method: Literal["lanczos", "power"] = "lanczos",
    iters: int = 100,
    tol: float = 1e-4,
    seed: int = 0,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> tuple[float, int, bool]:
    """(λ_max, HVP count, converged). Lanczos: largest algebraic eigenvalue; power: largest |λ| (signed).

    The start vector is drawn from a private generator, so the global RNG is untouched.
    """
    v0 = np.random.default_rng(seed).standard_normal(n)
    calls = 0

    def mv(v: np.ndarray) -> np.ndarray:
        nonlocal calls
        calls += 1
        t = torch.as_tensor(np.asarray(v).reshape(-1), dtype=dtype, device=device)
        return hvp(t).double().cpu().numpy()

    if method == "lanczos":
        if n < 3:
            dense = np.stack([mv(e) for e in np.eye(n)])
            return float(np.linalg.eigvalsh((dense + dense.T) / 2)[-1]), calls, True
        op = LinearOperator((n, n), matvec=mv, dtype=np.float64)
        try:
            val = eigsh(op, k=1, which="LA", v0=v0, tol=tol, maxiter=iters, return_eigenvectors=False)
            return float(val[0]), calls, True
        except ArpackNoConvergence as e:
            vals = e.eigenvalues
            return (float(vals[-1]) if len(vals) else float("nan")), calls, False
    if method != "power":
        raise UserError(f"unknown hessian method {method!r}; choose 'lanczos' or 'power'")
    v = v0 / np.linalg.norm(v0)
    lam = float("nan")
    for _ in range(iters):
        hv = mv(v)
        new = float(v @ hv)
        norm = float(np.linalg.norm(hv))
        if norm == 0 or not np.isfinite(norm):
            return new, calls, False
        v = hv / norm
        if np.isfinite(lam) and abs(new - lam) <= tol * abs(new):
            return new, calls, True
        lam = new
    return lam, calls, False


@register_probe("hessian_top_eig", kind="data")
def hessian_top_eig(
    model: nn.Module,
    batches: Sequence[tuple],
    *,
    ctx: ProbeContext,
    n_batches: int = 1,
    method: Literal["lanczos", "power"] = "lanczos",
    iters: int = 100,
    tol: float = 1e-4,
    seed: int = 0,
    norm_stats: NormStats = "batch",
) -> ProbeResult:
    """λ_max of the Hessian of the mean loss over the first `n_batches` batches, and lr·λ_max vs 2(1+β).

    lr is ctx.lr (else the optimizer's first group lr); β the optimizer's momentum (0 without one).
    """
    if n_batches < 1 or len(batches) < n_batches:
        raise UserError(f"hessian_top_eig needs n_batches >= 1 batches, got {len(batches)} for {n_batches}")
    use = list(batches[:n_batches])
    params = list(trainable(model).values())
    with guard(model), norm_stats_mode(model, norm_stats) as stats:
        hvp, n = hvp_operator(model, use, ctx.loss_fn)
        lam, calls, converged = top_eigenvalue(
            hvp,
            n,
            method=method,
            iters=iters,
            tol=tol,
            seed=seed,
            device=params[0].device,
            dtype=params[0].dtype,
        )
    beta, nesterov = optimizer_momentum(ctx.optimizer)
    lr = ctx.step_lr
    limit = stability_limit(beta, nesterov)
    lam_lr = lam * lr if lr is not None else float("nan")
    threshold = limit / lr if lr else float("nan")
    values = {
        "lambda_max": lam,
        "threshold": threshold,
        "lambda_lr": lam_lr,
        "limit": limit,
        "stable": float(lam_lr < limit) if lr is not None else float("nan"),
        "hvp_calls": float(calls),
        "converged": float(converged),
    }
    rows = [
        {"probe": "hessian_top_eig", "layer": "model", "metric": k, "value": float(v)}
        for k, v in values.items()
    ]
    return ProbeResult.from_rows(
        rows, norm_stats=stats, step=ctx.step, lr=lr, momentum=beta, nesterov=nesterov, method=method
    )
