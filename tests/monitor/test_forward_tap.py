"""activation_moments from the user's own forward (bnlab.monitor.forward_tap): the same rows and arrays as
the probe's second forward, bit for bit, and the second forward whenever the user's forward does not
qualify (dropout, two forwards, other inputs, eval mode)."""

import numpy as np
import pandas as pd
import pytest
import torch
from monitor_nets import batches, small_bn_net, train
from torch import nn

from bnlab.monitor import Monitor
from bnlab.monitor.forward_tap import MomentsTap
from bnlab.store import load_probes
from bnlab.store.probe_files import read_probe_arrays


def _arrays(run_dir):
    return read_probe_arrays(run_dir / "probes", "activation_moments")[0]


def _same_probe_files(a, b):
    ta = load_probes(a.parent, "activation_moments")
    ta = ta[ta["run_id"] == a.name].drop(columns="run_id").reset_index(drop=True)
    tb = load_probes(b.parent, "activation_moments")
    tb = tb[tb["run_id"] == b.name].drop(columns="run_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(ta, tb, check_exact=True)
    xa, xb = _arrays(a), _arrays(b)
    assert sorted(xa) == sorted(xb)
    for s in xa:
        assert sorted(xa[s]) == sorted(xb[s])
        for k in xa[s]:
            np.testing.assert_array_equal(xa[s][k], xb[s][k])


@pytest.mark.parametrize("net", ["small", "resnet"])
def test_reused_forward_gives_the_probes_result_bit_for_bit(tmp_path, net):
    def model():
        if net == "small":
            return small_bn_net()
        from bnlab import build_model

        torch.manual_seed(0)
        return build_model("resnet_cifar", depth=8, norm="batch")

    data = batches(9, batch=8) if net == "small" else [(x.repeat(1, 1, 2, 2), y) for x, y in batches(7, 8)]
    runs = {}
    for reuse in (False, True):
        m = model()
        _, mon = train(
            m,
            data,
            lambda m, o, reuse=reuse: Monitor(
                m, o, schedule=2, runs=tmp_path, name=f"reuse{reuse}", reuse_forward=reuse
            ),
        )
        runs[reuse] = (m, mon)
    (a, ma), (b, mb) = runs[False], runs[True]
    assert ma.reused_forwards == 0 and mb.reused_forwards == mb.measured - 1 > 1  # all but the first
    _same_probe_files(ma.run_dir, mb.run_dir)
    for p, q in zip(a.state_dict().values(), b.state_dict().values(), strict=True):
        assert torch.equal(p, q)
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in b.modules())  # closed: none left


class _Dropout(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net, self.drop = small_bn_net(), nn.Dropout(0.2)

    def forward(self, x):
        return self.net(self.drop(x))


def _loop(model, data, tmp_path, name, *, twice=False, other_input=False, eval_mode=False):
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    mon = Monitor(model, opt, schedule=1, runs=tmp_path, name=name)
    for step, (x, y) in enumerate(data):
        model.train(not eval_mode)
        if twice:
            model(x)
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        mon.step(step, x.clone() if other_input else x, y, loss=loss)
        opt.step()
    mon.close()
    return mon


@pytest.mark.parametrize("case", ["dropout", "twice", "other_input", "eval_mode"])
def test_a_forward_that_does_not_qualify_gets_the_second_forward(tmp_path, case):
    data = batches(4, batch=8)
    model = _Dropout() if case == "dropout" else small_bn_net()
    mon = _loop(model, data, tmp_path, case, **({} if case == "dropout" else {case: True}))
    assert mon.measured == 4 and mon.reused_forwards == 0
    assert len(_arrays(mon.run_dir)) == 4


def test_tap_is_not_armed_without_a_previous_result_and_removes_its_hooks():
    model = small_bn_net()
    tap = MomentsTap(model)
    x = torch.randn(4, 3, 8, 8)
    assert tap.take(x) is None  # never armed
    from bnlab.probes import activation_moments
    from bnlab.probes.guard import mark_finite

    prev = activation_moments(model, x)
    assert tap.arm(prev) and tap.armed
    with torch.no_grad():
        model(x)
    got = tap.take(x)
    assert not tap.armed and not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())
    want = mark_finite(activation_moments(model, x))
    pd.testing.assert_frame_equal(got.table, want.table, check_exact=True)
    for k in want.arrays:
        np.testing.assert_array_equal(got.arrays[k], want.arrays[k])
