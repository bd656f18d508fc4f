"""gradient_predictiveness against a literal float64 reference: copy the model, move each parameter by
hand, backward on the same minibatch, and sum the squared gradient differences entry by entry."""

from __future__ import annotations

import copy
import math

import nets
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bnlab.errors import UserError
from bnlab.probes import PROBE_KIND, PROBES, gradient_predictiveness
from bnlab.probes.context import ProbeContext
from bnlab.probes.update import state_differences, state_snapshot


def literal_grad(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[list[torch.Tensor], float]:
    """Loss and gradient of a fresh copy in training mode (batch statistics), by .backward()."""
    twin = copy.deepcopy(model)
    twin.train()
    twin.zero_grad()
    loss = F.cross_entropy(twin(x), y)
    loss.backward()
    return [p.grad.clone() for p in twin.parameters()], float(loss.detach())


def reference(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, s: float, d: list[torch.Tensor] | None = None
):
    """(loss at θ − s·d, ‖Δ∇L‖, β) with loops over parameters and their entries; d defaults to ∇L(θ)."""
    g0, _ = literal_grad(model, x, y)
    d = g0 if d is None else d
    moved = copy.deepcopy(model)
    with torch.no_grad():
        for p, di in zip(moved.parameters(), d):
            flat, dflat = p.view(-1), di.reshape(-1)
            for k in range(flat.numel()):
                flat[k] = flat[k] - s * dflat[k]
    g1, loss = literal_grad(moved, x, y)
    sq, dsq = 0.0, 0.0
    for a, b, di in zip(g1, g0, d):
        for u, v, w in zip(a.reshape(-1).tolist(), b.reshape(-1).tolist(), di.reshape(-1).tolist()):
            sq += (u - v) ** 2
            dsq += w * w
    change = math.sqrt(sq)
    return loss, change, change / (s * math.sqrt(dsq))


def values(res, metric: str) -> np.ndarray:
    t = res.table[res.table.metric == metric].sort_values("eta")
    return t.value.to_numpy(float)


@pytest.mark.parametrize("norm", [True, False])
def test_matches_literal_reference(norm: bool) -> None:
    model, x, y = nets.make(norm=norm)
    etas = [0.01, 0.1, 0.5]
    res = gradient_predictiveness(model, [(x, y)], ctx=ProbeContext(step=3), etas=etas)
    ref = np.array([reference(model, x, y, s) for s in etas])
    np.testing.assert_allclose(values(res, "loss"), ref[:, 0], rtol=1e-9)
    np.testing.assert_allclose(values(res, "grad_change"), ref[:, 1], rtol=1e-7)
    np.testing.assert_allclose(values(res, "beta"), ref[:, 2], rtol=1e-7)
    assert res.value("beta_max") == pytest.approx(ref[:, 2].max(), rel=1e-7)
    _, loss0 = literal_grad(model, x, y)
    losses = np.concatenate([[loss0], ref[:, 0]])
    assert res.value("loss_range") == pytest.approx(losses.max() - losses.min(), rel=1e-9)
    assert res.attrs["norm_stats"] == ("batch" if norm else "none") and res.attrs["step"] == 3


def test_update_direction_and_lr_multiples() -> None:
    """direction='update' with SGD momentum: d = the momentum buffer's next value (+ weight decay)."""
    model, x, y = nets.make()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3)
    model.train()
    for s in range(2):
        opt.zero_grad()
        F.cross_entropy(model(x + s), y).backward()
        opt.step()
    before = state_snapshot(model, opt)
    res = gradient_predictiveness(
        model, [(x, y)], ctx=ProbeContext(optimizer=opt, lr=0.05), direction="update", lr_multiples=[1.0, 4.0]
    )
    assert state_differences(before, state_snapshot(model, opt)) == []
    g0, _ = literal_grad(model, x, y)
    d = []
    for p, g in zip(model.parameters(), g0):
        buf = opt.state[p]["momentum_buffer"]
        d.append(0.9 * buf + (g + 1e-3 * p.detach()))
    ref = np.array([reference(model, x, y, s, d) for s in (0.05, 0.2)])
    np.testing.assert_allclose(values(res, "loss"), ref[:, 0], rtol=1e-9)
    np.testing.assert_allclose(values(res, "beta"), ref[:, 2], rtol=1e-7)


def test_state_untouched_rng_and_eval_mode() -> None:
    model, x, y = nets.make()
    model.eval()
    F.cross_entropy(model(x), y).backward()  # a .grad the probe must not touch
    before = state_snapshot(model)
    rng = torch.get_rng_state()
    res = gradient_predictiveness(model, [(x, y)], ctx=ProbeContext(lr=0.1))
    assert state_differences(before, state_snapshot(model)) == []
    assert torch.equal(rng, torch.get_rng_state()) and not model.training
    assert sorted(res.table.eta.dropna().unique()) == pytest.approx([0.025, 0.05, 0.1, 0.2, 0.4])


def test_frozen_differs_from_batch_and_nonfinite_is_named() -> None:
    model, x, y = nets.make()
    b = gradient_predictiveness(model, [(x, y)], ctx=ProbeContext(), etas=[0.1])
    f = gradient_predictiveness(model, [(x, y)], ctx=ProbeContext(), etas=[0.1], norm_stats="frozen")
    assert f.attrs["norm_stats"] == "frozen" and b.value("beta_max") != pytest.approx(f.value("beta_max"))
    big = gradient_predictiveness(model, [(x, y)], ctx=ProbeContext(), etas=[0.1, 1e300])
    assert big.value("nonfinite") == 1 and np.isfinite(big.value("beta_max"))


def test_registered_and_errors() -> None:
    assert PROBES.get("gradient_predictiveness") is gradient_predictiveness
    assert PROBE_KIND["gradient_predictiveness"] == "data"
    model, x, y = nets.make()
    with pytest.raises(UserError, match="needs ctx.optimizer"):
        gradient_predictiveness(model, [(x, y)], ctx=ProbeContext(), direction="update")
    with pytest.raises(UserError, match="not both"):
        gradient_predictiveness(model, [(x, y)], ctx=ProbeContext(lr=0.1), etas=[0.1], lr_multiples=[1])
    with pytest.raises(UserError, match="need the step's lr"):
        gradient_predictiveness(model, [(x, y)], ctx=ProbeContext(), lr_multiples=[1])
    with pytest.raises(UserError, match="positive"):
        gradient_predictiveness(model, [(x, y)], ctx=ProbeContext(), etas=[-1.0])
