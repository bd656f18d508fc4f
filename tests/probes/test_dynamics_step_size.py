"""step_size_scan against a literal reference: copy the model, step it, re-evaluate the same minibatch."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bnlab.errors import UserError
from bnlab.probes import PROBE_KIND, PROBES
from bnlab.probes.context import ProbeContext
from bnlab.probes.step_size_scan import step_size_scan
from bnlab.probes.update import (
    batch_gradient,
    optimizer_step_on_copy,
    sgd_direction,
    state_differences,
    state_snapshot,
)


def bn_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1, bias=False),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Conv2d(4, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 3),
    ).double()


def batch(seed: int = 1, b: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 3, 5, 5, generator=g, dtype=torch.float64), torch.randint(0, 3, (b,), generator=g)


def trained_state(model: nn.Module, opt: torch.optim.Optimizer, steps: int = 2) -> tuple:
    """A few real steps (momentum buffers exist), then backward on the probe batch (grad = current)."""
    model.train()
    for s in range(steps):
        x, y = batch(10 + s)
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    x, y = batch(1)
    opt.zero_grad()
    F.cross_entropy(model(x), y).backward()
    return x, y


def reference_ratio(model, x, y, eta, opt=None):
    """Literal: deep-copy the model (and optimizer), take the step, evaluate the same batch in train mode."""
    twin = copy.deepcopy(model)
    twin.train()
    loss0 = F.cross_entropy(twin(x), y)
    twin.zero_grad()
    loss0.backward()
    if opt is None:
        with torch.no_grad():
            for p in twin.parameters():
                p -= eta * p.grad
    else:
        twin_opt = type(opt)(twin.parameters(), **opt.defaults)
        twin_opt.load_state_dict(copy.deepcopy(opt.state_dict()))
        for g in twin_opt.param_groups:
            g["lr"] = eta
        twin_opt.step()
    twin2 = copy.deepcopy(model)  # fresh running stats for the second forward, as the probe restores them
    twin2.load_state_dict(twin.state_dict())
    twin2.train()
    with torch.no_grad():
        return float(F.cross_entropy(twin2(x), y) / loss0)


@pytest.mark.parametrize("nesterov", [False, True])
def test_ratio_matches_copy_step_and_reevaluate(nesterov: bool) -> None:
    model = bn_net()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3, nesterov=nesterov)
    x, y = trained_state(model, opt)
    etas = [1e-4, 1e-2, 0.3, 1.0]
    res = step_size_scan(model, [(x, y)], ctx=ProbeContext(step=2, optimizer=opt, lr=0.05), etas=etas)
    t = res.table[res.table.metric == "ratio"]
    for eta in etas:
        got_g = t[(t.direction == "gradient") & (t.eta == eta)].value.item()
        got_u = t[(t.direction == "update") & (t.eta == eta)].value.item()
        assert got_g == pytest.approx(reference_ratio(model, x, y, eta), rel=1e-10)
        assert got_u == pytest.approx(reference_ratio(model, x, y, eta, opt), rel=1e-10)
    assert res.attrs["norm_stats"] == "batch"
    np.testing.assert_allclose(res.arrays["ratio_gradient"], t[t.direction == "gradient"].value.to_numpy())


def test_update_direction_first_step_has_no_buffer() -> None:
    """At step 0 torch SGD has no momentum buffer: d = g + wd·θ."""
    model = bn_net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-2)
    x, y = batch()
    grads, _ = batch_gradient(model, x, y)
    d = sgd_direction(opt, model, grads)
    for n, p in model.named_parameters():
        torch.testing.assert_close(d[n], grads[n] + 1e-2 * p.detach(), rtol=0, atol=0)


@pytest.mark.parametrize(
    "opt_kw", [dict(momentum=0.9, dampening=0.3), dict(momentum=0.5, nesterov=True, maximize=True)]
)
def test_sgd_formula_matches_a_real_step(opt_kw: dict) -> None:
    model = bn_net()
    opt = torch.optim.SGD(model.parameters(), lr=0.07, weight_decay=1e-3, **opt_kw)
    x, y = trained_state(model, opt, steps=3)
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    d = sgd_direction(opt, model, grads)
    delta = optimizer_step_on_copy(opt, model, grads)
    for n in d:
        torch.testing.assert_close(-0.07 * d[n], delta[n], rtol=1e-9, atol=1e-12)


def test_adam_update_direction_and_state_untouched() -> None:
    model = bn_net()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = trained_state(model, opt)
    before = state_snapshot(model, opt)
    res = step_size_scan(model, [(x, y)], ctx=ProbeContext(optimizer=opt, lr=1e-3), etas=[1e-3])
    assert state_differences(before, state_snapshot(model, opt)) == []
    got = res.table.query("metric == 'ratio' and direction == 'update'").value.item()
    assert got == pytest.approx(reference_ratio(model, x, y, 1e-3, opt), rel=1e-10)


def test_state_untouched() -> None:
    model = bn_net()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3)
    x, y = trained_state(model, opt)
    model.eval()  # the probe switches to batch statistics and must switch back
    before = state_snapshot(model, opt)
    step_size_scan(model, [(x, y)], ctx=ProbeContext(optimizer=opt, lr=0.05))
    assert state_differences(before, state_snapshot(model, opt)) == []
    assert not model.training


def test_snapshot_detects_changes() -> None:
    model = bn_net()
    before = state_snapshot(model)
    model[1].running_mean[0] += 1e-12
    assert state_differences(before, state_snapshot(model)) == ["buffer:1.running_mean"]


def test_registered_defaults_and_errors() -> None:
    assert PROBES.get("step_size_scan") is step_size_scan and PROBE_KIND["step_size_scan"] == "data"
    model = bn_net()
    x, y = batch()
    res = step_size_scan(model, [(x, y)], ctx=ProbeContext(), directions=["gradient"])
    t = res.table
    assert len(t[t.metric == "ratio"]) == 25 and t.eta.min() == pytest.approx(1e-5) and t.eta.max() == 1.0
    small = t[(t.metric == "ratio") & (t.eta == t.eta.min())].value.item()
    assert small < 1.0  # a tiny gradient step lowers the loss
    with pytest.raises(UserError, match="needs ctx.optimizer"):
        step_size_scan(model, [(x, y)], ctx=ProbeContext(), directions=["update"])
    # the default directions are the ones the context allows: gradient only without an optimizer
    assert set(step_size_scan(model, [(x, y)], ctx=ProbeContext()).table["direction"]) == {"gradient"}
    with pytest.raises(UserError):
        step_size_scan(model, [(x, y)], ctx=ProbeContext(), directions=["sideways"])
