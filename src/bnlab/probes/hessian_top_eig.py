"""hessian_top_eig: the top Hessian eigenvalue λ_max of the minibatch loss, with batch statistics.

Hessian-vector products by double backward (Pearlmutter), in the norm mode the model trains in — BN in
training mode, so the Hessian includes the dependence of the batch statistics on θ (PyHessian uses eval
mode). λ_max comes from Lanczos (scipy's ARPACK `eigsh`, largest algebraic), Lanczos with full
reorthogonalization stopped at the first converged step (`lanczos_reorth`: largest algebraic, fewest HVPs)
or power iteration (largest magnitude), and is set against the stability threshold of SGD with heavy-ball momentum β on a quadratic:
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
    method: Literal["lanczos", "lanczos_reorth", "power"] = "lanczos",
    iters: int = 100,
    tol: float = 1e-4,
    seed: int = 0,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> tuple[float, int, bool]:
    """(λ, HVP count, converged). Lanczos (both): largest algebraic eigenvalue; power: largest |λ| (signed).

    The same meaning for all methods: `iters` is the most Hessian-vector products spent on the search
    (Lanczos rounds it down to whole ARPACK restarts, but never below one restart); `converged` means the
    Ritz pair (λ, v) passes the residual test ‖Hv − λv‖ ≤ tol·|λ|, which for a symmetric H puts an
    eigenvalue within tol·|λ| of λ — the residual is measured by one more HVP, counted (lanczos_reorth:
    from the HVPs already made, `_lanczos_reorth`).
    The start vector is drawn from a private generator, so the global RNG is untouched.
    """
    if iters < 1 or not tol > 0:
        raise UserError(f"hessian_top_eig needs iters >= 1 and tol > 0, got iters={iters}, tol={tol}")
    v0 = np.random.default_rng(seed).standard_normal(n)
    calls = 0

    def mv(v: np.ndarray) -> np.ndarray:
        nonlocal calls
        calls += 1
        t = torch.as_tensor(np.asarray(v).reshape(-1), dtype=dtype, device=device)
        return hvp(t).double().cpu().numpy()

    def passes(lam: float, v: np.ndarray, hv: np.ndarray) -> bool:
        r = float(np.linalg.norm(hv - lam * v))
        return bool(np.isfinite(r) and r <= tol * abs(lam))

    if method == "lanczos":
        if n < 3:
            dense = np.stack([mv(e) for e in np.eye(n)])
            return float(np.linalg.eigvalsh((dense + dense.T) / 2)[-1]), calls, True
        op = LinearOperator((n, n), matvec=mv, dtype=np.float64)
        ncv = min(n - 1, 20)
        restarts = max(1, (iters - ncv) // max(1, ncv - 1))  # ARPACK's maxiter counts restarts, not HVPs
        try:
            vals, vecs = eigsh(op, k=1, which="LA", v0=v0, ncv=ncv, tol=tol, maxiter=restarts)
        except ArpackNoConvergence as e:
            vals, vecs = e.eigenvalues, e.eigenvectors
        if not len(vals):
            return float("nan"), calls, False
        lam, v = float(vals[-1]), vecs[:, -1] / np.linalg.norm(vecs[:, -1])
        return lam, calls, passes(lam, v, mv(v))
    if method == "lanczos_reorth":
        lam, converged = _lanczos_reorth(mv, v0, iters, tol, passes)
        return lam, calls, converged
    if method != "power":
        raise UserError(f"unknown hessian method {method!r}; choose 'lanczos', 'lanczos_reorth' or 'power'")
    v = v0 / np.linalg.norm(v0)
    lam = float("nan")
    while calls < iters:
        hv = mv(v)
        lam = float(v @ hv)  # Rayleigh quotient of the unit vector v
        if passes(lam, v, hv):
            return lam, calls, True
        norm = float(np.linalg.norm(hv))
        if norm == 0 or not np.isfinite(norm):
            return lam, calls, False
        v = hv / norm
    return lam, calls, False


def _lanczos_reorth(
    mv: Callable[[np.ndarray], np.ndarray],
    v0: np.ndarray,
    iters: int,
    tol: float,
    passes: Callable[[float, np.ndarray, np.ndarray], bool],
) -> tuple[float, bool]:
    """(λ, converged): the largest Ritz value of a Lanczos run with full reorthogonalization (two
    Gram-Schmidt passes against every basis vector, in float64), stopped at the first step whose Ritz pair
    (θ, y = V·s) passes the residual test. H·y is not one more HVP: it is (HV)·s, the same combination of
    the HVPs already made (H is linear), so every step is tested and no HVP is spent on the test. Unlike
    ARPACK (a whole ncv-step factorization before any test), it stops at the first step that converges.
    Memory: 2·min(iters, n) float64 vectors of length n (touched only as the run goes)."""
    n = v0.size
    m = min(iters, n)
    basis, images = np.zeros((m, n)), np.zeros((m, n))
    basis[0] = v0 / np.linalg.norm(v0)
    alphas: list[float] = []
    betas: list[float] = []
    lam = float("nan")
    for k in range(m):
        images[k] = mv(basis[k])
        alphas.append(float(basis[k] @ images[k]))
        v = basis[: k + 1]
        theta, s = np.linalg.eigh(np.diag(alphas) + np.diag(betas, 1) + np.diag(betas, -1))
        lam = float(theta[-1])
        if not np.isfinite(lam):
            return lam, False
        y, hy = v.T @ s[:, -1], images[: k + 1].T @ s[:, -1]
        norm = float(np.linalg.norm(y))
        if passes(lam, y / norm, hy / norm):
            return lam, True
        w = images[k]
        for _ in range(2):
            w = w - v.T @ (v @ w)
        beta = float(np.linalg.norm(w))
        if beta == 0 or k + 1 >= m:
            return lam, False
        basis[k + 1] = w / beta
        betas.append(beta)
    return lam, False


@register_probe(kind="data")
def hessian_top_eig(
    model: nn.Module,
    batches: Sequence[tuple],
    *,
    ctx: ProbeContext,
    n_batches: int = 1,
    method: Literal["lanczos", "lanczos_reorth", "power"] = "lanczos",
    iters: int = 100,
    tol: float = 1e-4,
    seed: int = 0,
    norm_stats: NormStats = "batch",
) -> ProbeResult:
    """Top Hessian eigenvalue of the minibatch loss (Lanczos or power), and lr * lambda_max vs the SGD stability limit.

    λ_max of the Hessian of the mean loss over the first `n_batches` batches, and lr·λ_max vs 2(1+β).

    method: lanczos (largest algebraic eigenvalue, ARPACK), lanczos_reorth (the same eigenvalue, stopped
    at the first converged Krylov step: fewer HVPs) or power (largest magnitude). iters: the most
    Hessian-vector products either method spends; converged = 1 when ‖Hv − λv‖ ≤ tol·|λ| (an eigenvalue
    lies within tol·|λ| of the reported one; see `top_eigenvalue`).
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
