"""Observers: a run pays only for what it asks for; the snapshot, the loss window and resume."""

import json

import pytest

import bnlab.training.observers as observers_mod
from bnlab.config import resolve
from bnlab.training import run, train
from bnlab.training.observers import (
    LayerStats,
    LossWindow,
    Observer,
    PreUpdateSnapshot,
    ProbeSchedules,
    TensorBoard,
    observers_for,
)


@pytest.fixture
def count_copies(monkeypatch):
    """Counts calls of the one function that copies θ and the optimizer state, and every tensor clone made
    by bnlab code (torch's SGD clones each gradient once, into its momentum buffer: not counted)."""
    import sys

    import torch

    calls = {"snapshot": 0, "clone": 0}
    real_snapshot, real_clone = observers_mod.snapshot_state, torch.Tensor.clone

    def snapshot(*a, **k):
        calls["snapshot"] += 1
        return real_snapshot(*a, **k)

    def clone(self, *a, **k):
        caller = sys._getframe(1).f_code.co_filename.replace("\\", "/")
        calls["clone"] += "/bnlab/" in caller and "/tests/" not in caller
        return real_clone(self, *a, **k)

    monkeypatch.setattr(observers_mod, "snapshot_state", snapshot)
    monkeypatch.setattr(torch.Tensor, "clone", clone)
    return calls


def _quiet(over):
    return over + ["train.layer_stats_every=0", "train.tensorboard=false"]


def test_a_run_that_asks_for_nothing_copies_no_state(tmp_path, tiny_overrides, count_copies):
    d = train(None, tmp_path, _quiet(tiny_overrides), progress=False)
    assert json.loads((d / "status.json").read_text())["state"] == "complete"
    assert count_copies == {"snapshot": 0, "clone": 0}


def test_the_snapshot_observer_copies_once_per_step(tmp_path, tiny_overrides, count_copies):
    cfg = resolve(None, _quiet(tiny_overrides))
    st = run(cfg, tmp_path / "r", progress=False, observers=[PreUpdateSnapshot()])
    assert st["state"] == "complete" and st["step"] == 16
    assert count_copies["snapshot"] == 16
    assert count_copies["clone"] >= 16 * 20  # θ (ResNet-8: > 20 tensors) copied at every step


def test_snapshot_with_sync_every_still_saves_the_exact_diverging_state(tmp_path, tiny_overrides):
    import torch

    over = tiny_overrides + ["model.norm=none", "optim.lr=5.0", "train.divergence.threshold=5"]
    a = run(resolve(None, over), tmp_path / "a", progress=False, observers=[PreUpdateSnapshot()])
    b = run(
        resolve(None, over + ["train.sync_every=7"]),
        tmp_path / "b",
        progress=False,
        observers=[PreUpdateSnapshot()],
    )
    assert a["state"] == b["state"] == "diverged" and a["step"] == b["step"] >= 1
    da = torch.load(tmp_path / "a" / "ckpt" / "diverging.pt", weights_only=True)
    db = torch.load(tmp_path / "b" / "ckpt" / "diverging.pt", weights_only=True)
    assert da["step"] == db["step"] == a["step"] - 1
    assert all(torch.equal(da["model"][k], db["model"][k]) for k in da["model"])


def test_observers_for_builds_what_the_config_asks_for():
    kinds = lambda over: [type(o) for o in observers_for(resolve(None, over))]  # noqa: E731
    assert kinds(["train.layer_stats_every=0", "train.tensorboard=false"]) == [LossWindow]
    assert kinds(["probes=[{name: output_bias, at: [0]}]"]) == [
        LossWindow,
        ProbeSchedules,
        LayerStats,
        TensorBoard,
    ]


def test_hooks_are_called_in_step_order(tmp_path, tiny_overrides):
    class Recorder(Observer):
        def __init__(self):
            self.events = []

        def on_loss(self, step, loss):
            self.events.append(("loss", step))

        def after_backward(self, step, lr):
            self.events.append(("backward", step))

        def before_update(self, step):
            self.events.append(("update", step))

        def on_eval(self, step, rows):
            self.events.append(("eval", step, tuple(sorted(rows))))

        def after_training(self, step, lr):
            self.events.append(("end", step))

    rec = Recorder()
    run(resolve(None, _quiet(tiny_overrides)), tmp_path / "r", progress=False, observers=[rec])
    assert rec.events[:4] == [("loss", 0), ("backward", 0), ("update", 0), ("loss", 1)]
    assert ("eval", 8, ("test", "train", "train_eval", "val")) in rec.events
    assert rec.events[-1] == ("end", 16)


def test_loss_window_is_checkpointed_under_its_old_key():
    w = LossWindow(size=3)
    for s, v in enumerate([4.0, 3.0, 2.0, 1.0]):
        w.on_loss(s, v)
    assert w.state_key == "recent" and w.state_dict() == [3.0, 2.0, 1.0]
    assert w.summary() == {"last10_loss": 2.0}
