"""The CUDA hot path, checked on CPU: by default no per-step host read of the losses on CUDA (and no state
copy: tests/training/test_observers.py), the first diverging step still exact; train.compile's values."""

import pytest
import torch

import bnlab.training.loop as loop_mod
from bnlab.config import resolve, run_id
from bnlab.errors import UserError
from bnlab.store import RunDir
from bnlab.store.files import read_jsonl
from bnlab.training import fast_path, run
from bnlab.training.fast_path import CUDA_SYNC_EVERY, compile_mode, compiled_forward, host_read_every
from bnlab.training.meter import TrainMeter
from bnlab.training.observers import PreUpdateSnapshot

CUDA, CPU = torch.device("cuda"), torch.device("cpu")  # device objects only: no CUDA needed


def test_default_host_reads_are_per_device():
    assert host_read_every(None, CUDA) == CUDA_SYNC_EVERY > 1  # no per-step host sync on CUDA
    assert host_read_every(None, CPU) == 1  # a read costs nothing on CPU
    assert host_read_every(7, CUDA) == host_read_every(7, CPU) == 7  # train.sync_every wins
    assert host_read_every(None, CUDA, [PreUpdateSnapshot()]) == 1  # the snapshot must see each loss first


def test_sync_every_does_not_change_the_run_id():
    """It only says when the host reads (results tested identical), so every value keys the same run as
    the runs made when its default was 1."""
    ids = {run_id(resolve(None, [f"train.sync_every={v}"])) for v in ("null", 1, 50)}
    assert len(ids) == 1
    with pytest.raises(UserError, match="sync_every"):
        resolve(None, ["train.sync_every=0"])


@pytest.fixture
def as_if_cuda(monkeypatch):
    """The loop on CPU with CUDA's read cadence, counting the host reads of buffered losses."""
    reads = []
    real_read = TrainMeter.read

    def read(self):
        got = real_read(self)
        reads.append([s for s, _ in got])
        return got

    monkeypatch.setattr(TrainMeter, "read", read)
    monkeypatch.setattr(loop_mod, "host_read_every", lambda s, d, o: host_read_every(s, CUDA, o))
    return reads


def _steps_read(reads):
    return [s for batch in reads for s in batch]


def test_cuda_defaults_read_the_host_once_per_50_steps(tmp_path, tiny_overrides, as_if_cuda):
    over = tiny_overrides + [
        "train.steps=60",
        "train.evaluate=false",
        "train.eval_every=1000",  # the train row (a host read) is due once per eval_every epochs
        "train.checkpoint_every=1000",
        "train.layer_stats_every=0",
    ]
    st = run(resolve(None, over), tmp_path / "r", progress=False)
    assert st["state"] == "complete"
    assert [len(b) for b in as_if_cuda if b] == [50, 10]  # 60 steps: two host reads, not 60
    assert _steps_read(as_if_cuda) == list(range(60))  # every loss read once, in step order


def test_cuda_defaults_find_the_exact_diverging_step(tmp_path, tiny_overrides, as_if_cuda):
    over = tiny_overrides + ["model.norm=none", "optim.lr=5.0", "train.divergence.threshold=5"]
    run(resolve(None, over), tmp_path / "a", progress=False)  # CUDA's default cadence
    reads_a = list(as_if_cuda)
    run(resolve(None, over + ["train.sync_every=1"]), tmp_path / "b", progress=False)  # every step
    a, b = RunDir(tmp_path / "a").status(), RunDir(tmp_path / "b").status()
    assert a["state"] == b["state"] == "diverged" and a["step"] == b["step"] >= 1
    assert a["loss"] == b["loss"]
    assert max(len(x) for x in reads_a) > 1  # the CUDA-like run did buffer several steps per read


def test_layer_stats_are_not_written_past_the_diverging_step(tmp_path, tiny_overrides):
    """An observer due at a step makes the loop read that step's loss before it acts, so with buffered reads
    it writes exactly the rows of a run that reads every step."""
    over = tiny_overrides + [
        "model.norm=none",
        "optim.lr=5.0",
        "train.divergence.threshold=5",
        "train.layer_stats_every=1",
        "train.sync_every=7",
    ]
    st = run(resolve(None, over), tmp_path / "r", progress=False)
    ref = run(resolve(None, over[:-1] + ["train.sync_every=1"]), tmp_path / "ref", progress=False)
    assert st["state"] == ref["state"] == "diverged" and st["step"] == ref["step"]
    rows = {d: read_jsonl(tmp_path / d / "probes" / "layer_stats.jsonl")[0] for d in ("r", "ref")}
    steps = {d: sorted({r["step"] for r in rows[d]}) for d in rows}
    assert steps["r"] == steps["ref"] == list(range(st["step"]))  # none at or after the diverging step


@pytest.mark.parametrize("value", ["false", "true", "default", "reduce-overhead", "max-autotune"])
def test_compile_values_accepted(value):
    cfg = resolve(None, [f"train.compile={value}"])
    assert compile_mode(cfg.train.compile) == {"false": None, "true": "default"}.get(value, value)


def test_compile_off_by_default_and_unknown_mode_refused():
    assert resolve(None, []).train.compile is False
    with pytest.raises(UserError, match="train.compile must be true, false or one of"):
        resolve(None, ["train.compile=fastest"])


def test_compile_wraps_the_model_on_cuda_only(monkeypatch):
    calls = []
    monkeypatch.setattr(torch, "compile", lambda m, mode: calls.append(mode) or ("compiled", m))
    net = torch.nn.Linear(2, 2)
    assert compiled_forward(net, "reduce-overhead", CPU) is net  # CPU: never compiled
    assert compiled_forward(net, False, CUDA) is net
    assert compiled_forward(net, "reduce-overhead", CUDA) == ("compiled", net)
    assert compiled_forward(net, True, CUDA) == ("compiled", net)
    assert calls == ["reduce-overhead", "default"]
    assert fast_path.uses_cuda_graphs("reduce-overhead") and not fast_path.uses_cuda_graphs("default")


@pytest.mark.slow
def test_a_compiled_step_matches_the_eager_step():
    """torch.compile (inductor, CPU) of a small net: one SGD step gives the eager step's weights. Marked
    slow: the inductor compile alone takes ~100 s for a ResNet-8 on 2 CPU cores (the loop compiles on CUDA
    only; bench/gpu_check.py runs a compiled training run on the GPU)."""
    from bnlab.models import build_model

    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))

    def one_step(compiled: bool):
        torch.manual_seed(0)
        net = build_model(name="mlp", hidden=32, depth=2)
        fwd = torch.compile(net, mode="default") if compiled else net
        opt = torch.optim.SGD(net.parameters(), lr=0.1)
        torch.nn.functional.cross_entropy(fwd(x), y).backward()
        opt.step()
        return net.state_dict()

    eager, comp = one_step(False), one_step(True)
    assert eager.keys() == comp.keys()  # the wrapper shares the plain module's parameters
    for k in eager:
        torch.testing.assert_close(comp[k], eager[k], rtol=1e-4, atol=1e-5)
