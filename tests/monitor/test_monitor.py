"""Monitor in a plain loop: bit-identical training with and without it (BN in training mode), the run
directory it writes, schedules and bad input."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from monitor_nets import batches, small_bn_net, train  # noqa: E402

from bnlab.errors import UserError
from bnlab.monitor import Monitor, Schedule
from bnlab.monitor.preserve import untouched
from bnlab.store import load_probes


def _seed_all(seed: int = 123) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def _state(model, opt):
    return (
        {k: v.clone() for k, v in model.state_dict().items()},
        {k: v.grad.clone() for k, v in model.named_parameters()},
        opt.state_dict(),
    )


def _identical(a, b):
    (wa, ga, oa), (wb, gb, ob) = a, b
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k  # bit-identical, running statistics included
    for k in ga:
        assert torch.equal(ga[k], gb[k]), k
    for i, s in oa["state"].items():
        assert torch.equal(s["momentum_buffer"], ob["state"][i]["momentum_buffer"])


@pytest.mark.parametrize("preset", ["cheap", "full"])
def test_thirty_steps_bit_identical_with_and_without_a_monitor(tmp_path, preset):
    data = batches(30)
    bare = small_bn_net()
    _seed_all()
    opt_bare, _ = train(bare, data)
    after_bare = (torch.rand(3), np.random.rand(), random.random())

    watched = small_bn_net()
    _seed_all()
    opt, mon = train(watched, data, lambda m, o: Monitor(m, o, probes=preset, schedule=5, runs=tmp_path))
    after_watched = (torch.rand(3), np.random.rand(), random.random())
    assert torch.equal(after_bare[0], after_watched[0]) and after_bare[1:] == after_watched[1:]
    _identical(_state(bare, opt_bare), _state(watched, opt))

    run = mon.run_dir
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["kind"] == "monitor" and cfg["optimizer"]["class"] == "SGD"
    assert cfg["model"]["layers"]["BatchNorm2d"] == 2
    assert run.name.startswith("mon-") and run.parent == tmp_path
    assert yaml.safe_load((run / "status.json").read_text())["state"] == "complete"
    steps = sorted(load_probes(tmp_path, "layer_stats")["step"].unique())
    assert steps == [0, 5, 10, 15, 20, 25]
    hist = load_probes(tmp_path, "gradient_histogram")
    assert set(hist["source"]) == {"grad"} and set(hist["norm_stats"]) == {"batch"}
    if preset == "full":
        assert not load_probes(tmp_path, "hessian_top_eig").empty
        assert not load_probes(tmp_path, "kernel_alignment").empty


def test_histogram_from_grad_equals_the_probe_on_the_same_batch(tmp_path):
    """The cheap preset reads .grad; the gradient_histogram probe recomputes the batch gradient (reference)."""
    from bnlab.monitor.grad_histogram import grad_histogram
    from bnlab.probes import gradient_histogram

    model = small_bn_net()
    x, y = batches(1)[0]
    torch.nn.functional.cross_entropy(model(x), y).backward()
    ours = grad_histogram(model).table.set_index(["layer", "metric"])["value"]
    ref = gradient_histogram(model, x, y).table.set_index(["layer", "metric"])["value"]
    assert ours.index.equals(ref.index)
    np.testing.assert_allclose(ours.to_numpy(), ref.to_numpy(), rtol=1e-4, atol=1e-9)


def test_untouched_restores_grad_buffers_modes_and_rngs():
    model = small_bn_net()
    x, y = batches(1)[0]
    torch.nn.functional.cross_entropy(model(x), y).backward()
    grads = {n: (p.grad, p.grad.clone()) for n, p in model.named_parameters()}
    bufs = {n: b.clone() for n, b in model.named_buffers()}
    rng = torch.get_rng_state()
    with untouched(model):
        model(x)  # updates running statistics
        model.eval()
        for p in model.parameters():
            p.grad.mul_(3)
        torch.rand(5), np.random.rand(), random.random()
    assert model.training and torch.equal(torch.get_rng_state(), rng)
    for n, p in model.named_parameters():
        assert p.grad is grads[n][0] and torch.equal(p.grad, grads[n][1])
    for n, b in model.named_buffers():
        assert torch.equal(b, bufs[n])


def test_default_schedule_includes_step_zero_and_is_log_spaced():
    from bnlab.monitor.schedule import schedule_of

    s = schedule_of(None)
    due = [t for t in range(2001) if s.due(t)]
    assert due[:10] == [0, 1, 2, 3, 6, 10, 18, 32, 56, 100] and 1000 in due and 2000 in due and 999 not in due
    assert [t for t in range(25) if Schedule.every_n(10).due(t)] == [0, 10, 20]
    assert [t for t in range(25) if schedule_of([3, 7]).due(t)] == [3, 7]


def test_bad_input_is_one_sentence(tmp_path):
    model = small_bn_net()
    with pytest.raises(UserError, match="unknown probe"):
        Monitor(model, probes=["no_such_probe"], runs=tmp_path)
    with pytest.raises(UserError, match="schedule"):
        Monitor(model, schedule="often", runs=tmp_path)
    Monitor(model, run_dir=tmp_path / "r").close()
    with pytest.raises(UserError, match="already exists"):
        Monitor(model, run_dir=tmp_path / "r")


def test_failed_block_marks_the_run_failed(tmp_path):
    model = small_bn_net()
    with pytest.raises(RuntimeError):
        with Monitor(model, runs=tmp_path) as mon:
            raise RuntimeError("boom")
    st = yaml.safe_load((mon.run_dir / "status.json").read_text())
    assert st["state"] == "failed" and "boom" in st["reason"]


def test_full_preset_hessian_matches_the_probe_default_with_fewer_hvps():
    """The full preset's λ_max (Lanczos with full reorthogonalization, stopped at the first step whose
    residual is ≤ 1e-3·|λ|) against the probe's default ARPACK Lanczos at tol 1e-8 (the reference), on the
    same batch with BN in training mode: within the preset's tolerance, on fewer Hessian-vector products."""
    from bnlab.monitor.presets import FULL
    from bnlab.probes import hessian_top_eig

    spec = next(p for p in FULL if p.name == "hessian_top_eig")
    model = small_bn_net().double()  # float64: the reference's tol 1e-8 is below float32's residual floor
    x, y = batches(1)[0]
    x = x.double()
    ours = hessian_top_eig(model, x, y, **spec.options)
    ref = hessian_top_eig(model, x, y, iters=400, tol=1e-8)
    assert ours.value("converged") == 1.0 and ref.value("converged") == 1.0
    lam = ref.value("lambda_max")
    assert abs(ours.value("lambda_max") - lam) <= spec.options["tol"] * abs(lam)
    assert ours.value("hvp_calls") < ref.value("hvp_calls")
