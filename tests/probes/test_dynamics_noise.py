"""sgd_noise against literal loops of backward passes (per example, per minibatch, per micro-batch)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bnlab.errors import UserError
from bnlab.probes.context import ProbeContext
from bnlab.probes.sgd_noise import sgd_noise
from bnlab.probes.update import state_differences, state_snapshot


def mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 3)).double()


def bn_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 16, 3)
    ).double()


def pool(n: int, shape: tuple = (5,), seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, *shape, generator=g, dtype=torch.float64), torch.randint(0, 3, (n,), generator=g)


def flat_grad(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    model.zero_grad()
    F.cross_entropy(model(x), y).backward()
    out = torch.cat([p.grad.reshape(-1).clone() for p in model.parameters()])
    model.zero_grad()
    return out


def values(res) -> dict[str, float]:
    return dict(zip(res.table.metric, res.table.value))


def ses(res) -> dict[str, float]:
    return dict(zip(res.table.metric, res.table.se))


@pytest.mark.parametrize("mode", ["batch", "frozen", "running"])
def test_matches_literal_loops_on_a_norm_free_net(mode: str) -> None:
    model = mlp()
    x, y = pool(24)
    batches = [(x[i : i + 8], y[i : i + 8]) for i in range(0, 24, 8)]
    res = sgd_noise(
        model, batches, ctx=ProbeContext(lr=0.3), per_example=mode, dataset_size=1000, micro_batch=2
    )
    v, s = values(res), ses(res)
    # per-example reference: one backward pass per example, plain loop
    per = torch.stack([flat_grad(model, x[i : i + 1], y[i : i + 1]) for i in range(24)])
    c_i = ((per - per.mean(0)) ** 2).sum(1)
    c = float(c_i.sum() / 23)
    assert v["C"] == pytest.approx(c, rel=1e-10)
    assert s["C"] == pytest.approx(float(c_i.std()) / np.sqrt(24) * 24 / 23, rel=1e-8)
    assert v["bound"] == pytest.approx(0.09 * c / 8, rel=1e-10)
    assert v["bound_wor"] == pytest.approx(0.09 * c * (1000 - 8) / (8 * 999), rel=1e-10)
    # minibatch reference
    gk = torch.stack([flat_grad(model, bx, by) for bx, by in batches])
    gv = float(((gk - gk.mean(0)) ** 2).sum() / 2)
    assert v["grad_var"] == pytest.approx(gv, rel=1e-10) and v["noise"] == pytest.approx(0.09 * gv, rel=1e-10)
    assert v["full_grad_sq"] == pytest.approx(float(gk.mean(0).square().sum()) - gv / 3, rel=1e-10)
    # micro-batch reference (McCandlish et al. 2018, appendix A.1)
    small = [
        np.mean(
            [float(flat_grad(model, bx[j : j + 2], by[j : j + 2]).square().sum()) for j in range(0, 8, 2)]
        )
        for bx, by in batches
    ]
    big = [float(g.square().sum()) for g in gk]
    g2 = np.mean([(8 * B - 2 * S) / 6 for B, S in zip(big, small)])
    tr = np.mean([(S - B) / (1 / 2 - 1 / 8) for B, S in zip(big, small)])
    assert v["grad_sq_micro"] == pytest.approx(g2, rel=1e-9)
    assert v["trace_sigma_micro"] == pytest.approx(tr, rel=1e-9)
    assert v["B_simple"] == pytest.approx(tr / g2, rel=1e-9)
    assert res.attrs["per_example_mode"] == mode and res.attrs["norm_stats"] == "none"
    assert "frozen/running" in res.attrs["bound_label"]


def test_measured_noise_meets_the_without_replacement_formula() -> None:
    """No BN, minibatches drawn without replacement from a pool of N: E‖g_B − g‖² = C_N (N−b)/(b(N−1))."""
    model = mlp()
    n, b, k = 40, 8, 120
    x, y = pool(n)
    per = torch.stack([flat_grad(model, x[i : i + 1], y[i : i + 1]) for i in range(n)])
    c_pop = float(((per - per.mean(0)) ** 2).sum(1).mean())  # E_i over the pool, as in Eq. 2
    expected = c_pop * (n - b) / (b * (n - 1))
    gen = torch.Generator().manual_seed(5)
    idx = [torch.randperm(n, generator=gen)[:b] for _ in range(k)]
    res = sgd_noise(
        model, [(x[i], y[i]) for i in idx], ctx=ProbeContext(lr=1.0), per_example=None, micro_batch=4
    )
    v, s = values(res), ses(res)
    assert abs(v["grad_var"] - expected) < 4 * s["grad_var"]
    assert abs(v["trace_sigma_micro"] - c_pop * n / (n - 1)) < 4 * s["trace_sigma_micro"] + 0.2 * c_pop
    assert "C" not in v and "bound_wor" not in v
    res = sgd_noise(
        model, [(x[i], y[i]) for i in idx[:4]], ctx=ProbeContext(extra={"dataset_size": n}), micro_batch=4
    )
    assert values(res)["bound_wor"] == pytest.approx(values(res)["bound"] * (n - b) / (n - 1), rel=1e-12)


def test_state_untouched_with_bn() -> None:
    model = bn_net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x, y = pool(16, (2, 4, 4))
    F.cross_entropy(model(x), y).backward()
    opt.step()
    F.cross_entropy(model(x), y).backward()
    before = state_snapshot(model, opt)
    batches = [(x[:8], y[:8]), (x[8:], y[8:])]
    for mode in ("batch", "frozen"):
        res = sgd_noise(model, batches, ctx=ProbeContext(optimizer=opt, lr=0.1), per_example=mode)
        assert res.attrs["norm_stats"] == "batch"
        assert np.isfinite(values(res)["C"]) and values(res)["grad_var"] > 0
    assert state_differences(before, state_snapshot(model, opt)) == []


def test_bad_input() -> None:
    model = mlp()
    x, y = pool(16)
    with pytest.raises(UserError):
        sgd_noise(model, [(x, y)], ctx=ProbeContext())
    with pytest.raises(UserError):
        sgd_noise(model, [(x[:8], y[:8]), (x[8:12], y[8:12])], ctx=ProbeContext())
    with pytest.raises(UserError):
        sgd_noise(model, [(x[:8], y[:8]), (x[8:], y[8:])], ctx=ProbeContext(), micro_batch=8)
    with pytest.raises(UserError):
        sgd_noise(model, [(x[:8], y[:8]), (x[8:], y[8:])], ctx=ProbeContext(), per_example="exact")
