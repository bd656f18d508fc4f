"""diverging_step against a literal reference: step a deep copy with the optimizer, displace copies of the
model along Δθ, read the layer outputs with hooks and reduce them with numpy."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bnlab.errors import UserError
from bnlab.probes.diverging_step import activation_layer, diverging_step
from bnlab.probes.update import state_differences, state_snapshot


def net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(4, 5, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(5, 6, 3, padding=1),
        nn.Flatten(),
        nn.Linear(6 * 16, 4),
    ).double()


def batch(seed: int, b: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 3, 4, 4, generator=g, dtype=torch.float64), torch.randint(0, 4, (b,), generator=g)


def setup() -> tuple[nn.Module, torch.optim.Optimizer]:
    model = net()
    opt = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9, weight_decay=1e-3)
    for s in range(2):  # momentum buffers exist
        x, y = batch(20 + s)
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return model, opt


def test_matches_literal_reference() -> None:
    model, opt = setup()
    prev, fired = batch(1), batch(2)
    res = diverging_step(model, prev, fired, opt, layers=["0", "2", "4"], grid=21)
    # literal: the optimizer's step on a deep copy
    twin = copy.deepcopy(model)
    twin_opt = torch.optim.SGD(twin.parameters(), **opt.defaults)
    twin_opt.load_state_dict(copy.deepcopy(opt.state_dict()))
    twin_opt.zero_grad()
    F.cross_entropy(twin(prev[0]), prev[1]).backward()
    twin_opt.step()
    old = dict(model.named_parameters())
    delta = {n: p.detach() - old[n].detach() for n, p in twin.named_parameters()}
    assert res.arrays["s"].shape == (21,)
    for i, s in enumerate(np.linspace(0, 1, 21)):
        probe = copy.deepcopy(model).train()
        with torch.no_grad():
            for n, p in probe.named_parameters():
                p += s * delta[n]
        outs = {}
        for name in ("0", "2", "4"):
            dict(probe.named_modules())[name].register_forward_hook(
                lambda m, a, o, name=name, outs=outs: outs.__setitem__(name, o)
            )
        with torch.no_grad():
            loss = float(F.cross_entropy(probe(fired[0]), fired[1]))
        assert res.arrays["loss"][i] == pytest.approx(loss, rel=1e-10)
        for name, o in outs.items():
            a = o.numpy()
            for c in range(a.shape[1]):
                vals = a[:, c].reshape(-1)
                assert res.arrays[f"mean/{name}"][i, c] == pytest.approx(vals.mean(), rel=1e-9, abs=1e-12)
                assert res.arrays[f"var/{name}"][i, c] == pytest.approx(vals.var(), rel=1e-9)
    with torch.no_grad():
        stepped = float(F.cross_entropy(twin(fired[0]), fired[1]))
    assert res.arrays["loss"][-1] == pytest.approx(stepped, rel=1e-10)  # s = 1 is the step that was taken
    assert res.arrays["mean/2"].shape == (21, 5)
    t = res.table
    assert t.query("metric == 'max_var' and layer == '4'").value.to_numpy() == pytest.approx(
        res.arrays["var/4"].max(1)
    )


def test_state_untouched() -> None:
    model, opt = setup()
    F.cross_entropy(model(batch(3)[0]), batch(3)[1]).backward()
    before = state_snapshot(model, opt)
    diverging_step(model, batch(1), batch(2), opt, layers=["2"])
    assert state_differences(before, state_snapshot(model, opt)) == []


def test_layer_mapping() -> None:
    model = net()  # no paper numbering: relative depth over Conv2d/Linear layers (4 of them)
    assert activation_layer(model, 1) == ("0", 1)
    assert activation_layer(model, 110) == ("6", 110)
    assert activation_layer(model, 44)[0] == "2"  # 43/109·3 = 1.18 -> the second weighted layer
    assert activation_layer(model, "4") == ("4", None)
    res = diverging_step(model, batch(1), batch(2), torch.optim.SGD(model.parameters(), lr=0.1))
    assert res.attrs["paper_layers"] == [8, 44, 80]
    with pytest.raises(UserError):
        activation_layer(model, "nope")
    with pytest.raises(UserError):
        activation_layer(model, 111)


def test_bnlab_resnet_uses_block_for_paper_layer() -> None:
    from bnlab.models import build_model

    model = build_model("resnet_cifar", depth=8, norm="none").double()
    names = [activation_layer(model, L)[0] for L in (8, 44, 80)]
    assert names == [model.block_for_paper_layer(L) for L in (8, 44, 80)]
    x = torch.randn(4, 3, 8, 8, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 3])
    res = diverging_step(model, (x, y), (x.flip(0), y), torch.optim.SGD(model.parameters(), lr=0.1), grid=21)
    for n in names:
        assert res.arrays[f"mean/{n}"].shape[0] == 21 and np.isfinite(res.arrays[f"var/{n}"]).all()
    assert res.attrs["norm_stats"] == "none"


def test_float64_scan_measures_what_float32_overflows():
    from bnlab import build_model

    torch.manual_seed(0)
    model = build_model(depth=20, norm="none")
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    x_fired = x * 1e37  # finite in float32; a few conv layers later it is not
    before = {k: v.clone() for k, v in model.state_dict().items()}
    kw = dict(layers=["layer3.2"], grid=3)
    f32 = diverging_step(model, (x, y), (x_fired, y), opt, precision="float32", **kw)
    f64 = diverging_step(model, (x, y), (x_fired, y), opt, precision="float64", **kw)
    assert not np.isfinite(f32.arrays["var/layer3.2"]).all()
    assert np.isfinite(f64.arrays["var/layer3.2"]).all()
    assert all(
        torch.equal(before[k], v) and v.dtype == before[k].dtype for k, v in model.state_dict().items()
    )
