"""gradient_geometry against literal per-batch backward passes and a copied, displaced model."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bnlab.errors import UserError
from bnlab.probes.context import ProbeContext
from bnlab.probes.gradient_geometry import filter_normalized_directions, gradient_geometry
from bnlab.probes.update import state_differences, state_snapshot


def net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1, bias=False),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Conv2d(4, 3, 3, padding=1),  # not followed by a norm: not scale invariant
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(3 * 16, 3),
    ).double()
    with torch.no_grad():  # BN's eps breaks scale invariance by ~eps/var: keep var(conv output) >> eps
        model[0].weight *= 4
    return model


def batches(k: int = 4, b: int = 6) -> list:
    g = torch.Generator().manual_seed(2)
    return [
        (torch.randn(b, 2, 4, 4, generator=g, dtype=torch.float64), torch.randint(0, 3, (b,), generator=g))
        for _ in range(k)
    ]


def grads_by_backward(model: nn.Module, x, y) -> dict[str, torch.Tensor]:
    twin = copy.deepcopy(model).train()
    F.cross_entropy(twin(x), y).backward()
    return {n: p.grad.clone() for n, p in twin.named_parameters()}


def flat(d: dict) -> np.ndarray:
    return np.concatenate([v.reshape(-1).numpy() for v in d.values()])


def test_matches_literal_reference() -> None:
    model = net()
    bs = batches()
    opt = torch.optim.SGD(model.parameters(), lr=0.2, momentum=0.9, weight_decay=1e-2)
    res = gradient_geometry(model, bs, ctx=ProbeContext(optimizer=opt, lr=0.2), etas=[1e-3, 0.1, 1.0], seed=3)
    t = res.table
    gs = [grads_by_backward(model, x, y) for x, y in bs]
    fl = np.stack([flat(g) for g in gs])
    mean = fl.mean(0)
    cos = [f @ mean / np.linalg.norm(f) / np.linalg.norm(mean) for f in fl]
    np.testing.assert_allclose(res.arrays["cos_with_mean"], cos, rtol=1e-10)
    loo = [f @ (fl.sum(0) - f) / np.linalg.norm(f) / np.linalg.norm(fl.sum(0) - f) for f in fl]
    np.testing.assert_allclose(res.arrays["cos_with_others"], loo, rtol=1e-10)
    frac = t.query("layer == 'model' and metric == 'input_independent_fraction'").value.item()
    assert frac == pytest.approx(mean @ mean / np.mean((fl**2).sum(1)), rel=1e-10)

    def row(layer: str, metric: str, direction: str | None = None) -> float:
        q = t[(t.layer == layer) & (t.metric == metric)]
        if direction is not None:
            q = q[q.direction == direction]
        return q.value.item()

    for layer in ("0", "3", "6"):
        w = dict(model.named_parameters())[f"{layer}.weight"].detach().numpy().reshape(-1)
        g = gs[0][f"{layer}.weight"].numpy().reshape(-1)
        radial = abs(g @ w) / np.linalg.norm(w)
        tangential = np.linalg.norm(g - (g @ w) / (w @ w) * w)
        assert row(layer, "radial", "gradient") == pytest.approx(radial, rel=1e-8, abs=1e-14)
        assert row(layer, "tangential", "gradient") == pytest.approx(tangential, rel=1e-10)
        assert row(layer, "effective_lr") == pytest.approx(0.2 / (w @ w), rel=1e-12)
        # the update (step 0: g + wd·w) has the weight decay as a radial part even on invariant weights
        u = g + 1e-2 * w
        assert row(layer, "radial", "update") == pytest.approx(abs(u @ w) / np.linalg.norm(w), rel=1e-8)
    assert row("0", "scale_invariant") == 1.0 and row("0", "invariance") < 1e-6
    assert row("3", "invariance") > 1e-3
    assert row("3", "scale_invariant") == 0.0 and row("6", "scale_invariant") == 0.0

    # loss slices: literally displace a copied model along the filter-normalized directions
    base = {n: p.detach() for n, p in model.named_parameters()}
    u, r = filter_normalized_directions(
        base, {n: -torch.as_tensor(0.0) - sum(g[n] for g in gs) / 4 for n in base}, 3
    )
    x, y = bs[0]
    for name, d in (("mean_gradient", u), ("random_orthogonal", r)):
        for eta in (1e-3, 0.1, 1.0):
            twin = copy.deepcopy(model).train()
            with torch.no_grad():
                for n, p in twin.named_parameters():
                    p += eta * d[n]
                want = float(F.cross_entropy(twin(x), y))
            got = t[(t.metric == "slice_loss") & (t.direction == name) & (t.eta == eta)].value.item()
            assert got == pytest.approx(want, rel=1e-10)


def test_filter_normalized_directions() -> None:
    model = net()
    base = {n: p.detach() for n, p in model.named_parameters()}
    gen = torch.Generator().manual_seed(0)
    d = {n: torch.randn(p.shape, generator=gen, dtype=torch.float64) for n, p in base.items()}
    u, r = filter_normalized_directions(base, d, seed=1)
    for n, w in base.items():
        if w.dim() < 2:
            assert not u[n].any() and not r[n].any()
            continue
        for i in range(w.shape[0]):
            assert float(u[n][i].norm()) == pytest.approx(float(w[i].norm()), rel=1e-12)
            assert float(r[n][i].norm()) == pytest.approx(float(w[i].norm()), rel=1e-12)
            assert abs(float((u[n][i] * r[n][i]).sum())) < 1e-12 * float(w[i].norm()) ** 2
            cos = float((u[n][i] * d[n][i]).sum() / u[n][i].norm() / d[n][i].norm())
            assert cos == pytest.approx(1.0, rel=1e-12)
    u2, r2 = filter_normalized_directions(base, d, seed=1)
    assert all(torch.equal(r[n], r2[n]) for n in r)


def test_state_untouched() -> None:
    model = net()
    bs = batches()
    opt = torch.optim.SGD(model.parameters(), lr=0.2, momentum=0.9)
    for x, y in bs[:2]:
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    F.cross_entropy(model(bs[0][0]), bs[0][1]).backward()
    before = state_snapshot(model, opt)
    rng = torch.get_rng_state()
    res = gradient_geometry(model, bs, ctx=ProbeContext(optimizer=opt, lr=0.2))
    assert state_differences(before, state_snapshot(model, opt)) == []
    assert torch.equal(rng, torch.get_rng_state())
    assert res.attrs["norm_stats"] == "batch"
    assert len(res.table.query("metric == 'slice_loss'")) == 3 * 25
    with pytest.raises(UserError):
        gradient_geometry(model, bs[:1], ctx=ProbeContext())
