"""hessian_top_eig against the dense Hessian of a tiny BN net (train mode), and the SGD stability limit
against torch SGD on a quadratic."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from bnlab.probes.context import ProbeContext
from bnlab.probes.hessian_top_eig import hessian_top_eig, stability_limit
from bnlab.probes.update import state_differences, state_snapshot


def tiny_bn_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 5), nn.BatchNorm1d(5), nn.Tanh(), nn.Linear(5, 3)).double()


def data(seed: int, b: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 4, generator=g, dtype=torch.float64), torch.randint(0, 3, (b,), generator=g)


def dense_hessian_eigs(model: nn.Module, batches: list) -> np.ndarray:
    """Literal reference: the full Hessian of the mean batch loss (BN in train mode) by autograd.functional."""
    twin = copy.deepcopy(model).train()
    names = [n for n, _ in twin.named_parameters()]
    shapes = [p.shape for _, p in twin.named_parameters()]
    flat0 = torch.cat([p.detach().reshape(-1) for p in twin.parameters()])

    def f(flat: torch.Tensor) -> torch.Tensor:
        parts, i = {}, 0
        for n, s in zip(names, shapes):
            k = int(np.prod(s))
            parts[n] = flat[i : i + k].view(s)
            i += k
        return sum(F.cross_entropy(functional_call(twin, parts, (x,)), y) for x, y in batches) / len(batches)

    h = torch.autograd.functional.hessian(f, flat0)
    assert torch.allclose(h, h.T, atol=1e-10)
    return np.linalg.eigvalsh(h.numpy())


@pytest.mark.parametrize("method", ["lanczos", "lanczos_reorth"])
@pytest.mark.parametrize("n_batches", [1, 2])
def test_lanczos_matches_dense_hessian(n_batches: int, method: str) -> None:
    model = tiny_bn_net()
    batches = [data(s) for s in range(n_batches)]
    eigs = dense_hessian_eigs(model, batches)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    res = hessian_top_eig(
        model, batches, ctx=ProbeContext(optimizer=opt, lr=0.1), n_batches=n_batches, tol=1e-10, method=method
    )
    v = dict(zip(res.table.metric, res.table.value))
    assert v["lambda_max"] == pytest.approx(eigs[-1], rel=1e-8)
    assert v["limit"] == pytest.approx(3.8) and v["threshold"] == pytest.approx(38.0)
    assert v["lambda_lr"] == pytest.approx(0.1 * eigs[-1], rel=1e-8)
    assert v["converged"] == 1.0 and res.attrs["norm_stats"] == "batch"


def test_power_iteration_matches_largest_magnitude() -> None:
    model = tiny_bn_net()
    eigs = dense_hessian_eigs(model, [data(0)])
    top = eigs[np.argmax(np.abs(eigs))]
    res = hessian_top_eig(model, [data(0)], ctx=ProbeContext(lr=0.1), method="power", iters=5000, tol=1e-12)
    v = dict(zip(res.table.metric, res.table.value))
    assert v["lambda_max"] == pytest.approx(top, rel=1e-6)


def test_state_untouched() -> None:
    model = tiny_bn_net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x, y = data(3)
    F.cross_entropy(model(x), y).backward()
    opt.step()
    F.cross_entropy(model(x), y).backward()
    before = state_snapshot(model, opt)
    rng = torch.get_rng_state()
    hessian_top_eig(model, [data(0)], ctx=ProbeContext(optimizer=opt))
    assert state_differences(before, state_snapshot(model, opt)) == []
    assert torch.equal(rng, torch.get_rng_state())


@pytest.mark.parametrize("beta,nesterov", [(0.0, False), (0.9, False), (0.5, True), (0.9, True)])
def test_stability_limit_matches_torch_sgd_on_a_quadratic(beta: float, nesterov: bool) -> None:
    lam = 3.0
    limit = stability_limit(beta, nesterov)

    def final(lr: float) -> float:
        x = torch.nn.Parameter(torch.tensor([1.0], dtype=torch.float64))
        opt = torch.optim.SGD([x], lr=lr, momentum=beta, nesterov=nesterov)
        for _ in range(1500):
            opt.zero_grad()
            (0.5 * lam * x**2).sum().backward()
            opt.step()
        return abs(float(x.detach()))

    assert final(0.98 * limit / lam) < 1e-3
    assert final(1.02 * limit / lam) > 1e3


@pytest.mark.parametrize("method", ["power", "lanczos", "lanczos_reorth"])
@pytest.mark.parametrize("tol", [1e-3, 1e-4, 1e-6])
def test_converged_means_an_eigenvalue_within_tol(method: str, tol: float) -> None:
    """converged = 1 is a residual test: the exact float64 Hessian has an eigenvalue within tol·|λ|; and
    iters bounds the HVPs of both methods."""
    model = tiny_bn_net()
    eigs = dense_hessian_eigs(model, [data(0)])
    for iters in (5, 40, 400, 4000):
        res = hessian_top_eig(model, [data(0)], method=method, iters=iters, tol=tol)
        lam, conv, calls = (res.value(m) for m in ("lambda_max", "converged", "hvp_calls"))
        if method != "lanczos":
            assert calls <= iters
        if conv == 1.0:
            assert np.min(np.abs(eigs - lam)) <= tol * abs(lam) * (1 + 1e-9), (iters, lam)
            want = eigs[np.argmax(np.abs(eigs))] if method == "power" else eigs[-1]
            assert lam == pytest.approx(want, rel=tol), (iters, lam, want)
    assert conv == 1.0  # the largest budget converges


def test_power_iteration_with_a_small_budget_does_not_claim_convergence() -> None:
    model = tiny_bn_net()
    eigs = dense_hessian_eigs(model, [data(0)])
    res = hessian_top_eig(model, [data(0)], method="power", iters=3, tol=1e-8)
    assert res.value("converged") == 0.0 and res.value("hvp_calls") == 3
    assert abs(res.value("lambda_max") - eigs[np.argmax(np.abs(eigs))]) > 0  # a three-step estimate
