"""The trainer end to end on tiny synthetic runs: schema, resume equality, divergence, probes."""

import json
import os
import subprocess
import sys

import pytest
import torch

from bnlab.config import resolve, run_id
from bnlab.store import RunDir
from bnlab.store.checkpoint import list_checkpoints
from bnlab.training import run, train
from bnlab.training.observers import PreUpdateSnapshot

SCHEMA_FILES = {"config.yaml", "env.json", "status.json", "metrics.jsonl", "summary.json", "ckpt"}


def _final(run_dir):
    summary = json.loads((run_dir / "summary.json").read_text())
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return summary, lines


def test_run_directory_matches_schema(tmp_path, tiny_overrides):
    d = train(None, tmp_path, tiny_overrides, progress=False)
    assert SCHEMA_FILES <= {p.name for p in d.iterdir()}
    st = json.loads((d / "status.json").read_text())
    assert st["state"] == "complete" and st["schema"] == 3 and st["step"] == 16
    summary, lines = _final(d)
    for k in (
        "train_loss",
        "train_acc",
        "val_loss",
        "val_acc",
        "test_loss",
        "test_acc",
        "steps",
        "wall_s",
        "img_per_s",
    ):
        assert k in summary
    assert {ln["split"] for ln in lines} == {"train", "train_eval", "val", "test"}
    assert all(set(ln) == {"step", "epoch", "split", "loss", "acc", "lr", "wall_s"} for ln in lines)
    env = json.loads((d / "env.json").read_text())
    assert env["threads"] == 1 and "deterministic" in env and "torch" in env


def test_rerun_of_finished_run_does_nothing(tmp_path, tiny_overrides):
    d = train(None, tmp_path, tiny_overrides, progress=False)
    before = (d / "metrics.jsonl").read_text()
    mtime = (d / "summary.json").stat().st_mtime_ns
    train(None, tmp_path, tiny_overrides, progress=False)
    assert (d / "metrics.jsonl").read_text() == before
    assert (d / "summary.json").stat().st_mtime_ns == mtime


@pytest.mark.parametrize("kill_at", ["checkpoint_write:2", "metrics_append:6"])
def test_resume_after_sigkill_equals_uninterrupted(tmp_path, tiny_overrides, kill_at):
    over = tiny_overrides + ["train.epochs=3", "train.checkpoint_every=0.5"]
    clean = train(None, tmp_path / "clean", over, progress=False)
    code = (
        "import sys; from bnlab.training import train;"
        f"train(None, {str(tmp_path / 'killed')!r}, {over!r}, progress=False)"
    )
    env = {**os.environ, "BNLAB_FAULT": kill_at}
    proc = subprocess.run([sys.executable, "-c", code], env=env)
    assert proc.returncode == -9  # it really was killed mid-run
    killed = tmp_path / "killed" / clean.name
    assert RunDir(killed).state() == "interrupted"  # its process is gone (status.json schema 2)
    train(None, tmp_path / "killed", over, progress=False)
    (a, la), (b, lb) = _final(clean), _final(killed)
    for k in a:
        if k.endswith(("loss", "acc")):
            assert a[k] == b[k], k
    strip = [{k: v for k, v in ln.items() if k != "wall_s"} for ln in la]
    assert strip == [{k: v for k, v in ln.items() if k != "wall_s"} for ln in lb]
    ma = torch.load(list_checkpoints(clean / "ckpt")[-1], weights_only=True)["model"]
    mb = torch.load(list_checkpoints(killed / "ckpt")[-1], weights_only=True)["model"]
    assert all(torch.equal(ma[k], mb[k]) for k in ma)


def test_corrupt_latest_checkpoint_uses_previous(tmp_path, tiny_overrides):
    over = tiny_overrides + ["train.epochs=3", "train.checkpoint_every=0.5"]
    clean = train(None, tmp_path / "clean", over, progress=False)
    env = {**os.environ, "BNLAB_FAULT": "metrics_append:9"}
    code = f"from bnlab.training import train; train(None, {str(tmp_path / 'k')!r}, {over!r}, progress=False)"
    assert subprocess.run([sys.executable, "-c", code], env=env).returncode == -9
    killed = tmp_path / "k" / clean.name
    latest = list_checkpoints(killed / "ckpt")[-1]
    latest.write_bytes(latest.read_bytes()[:100])
    train(None, tmp_path / "k", over, progress=False)
    st = RunDir(killed).status()
    assert st["state"] == "complete"
    assert any("checksum" in w for w in st["warnings"])
    assert _final(clean)[0]["test_acc"] == _final(killed)[0]["test_acc"]


@pytest.mark.parametrize("mode,threshold", [("relative", 5.0), ("absolute", 30.0)])
def test_divergence_is_a_result(tmp_path, tiny_overrides, mode, threshold):
    over = tiny_overrides + [
        "model.norm=none",
        "optim.lr=5.0",
        f"train.divergence.mode={mode}",
        f"train.divergence.threshold={threshold}",
    ]
    d = train(None, tmp_path, over, progress=False)
    st = RunDir(d).status()
    assert st["state"] == "diverged", st
    assert st["step"] < 32 and st["reason"]
    assert not (d / "summary.json").exists()
    assert not (d / "ckpt" / "diverging.pt").exists()  # only the diverging-step task asks for it
    cfg = resolve(None, over)
    e = tmp_path / "snap"
    st = run(cfg, e, progress=False, observers=[PreUpdateSnapshot()])
    div = torch.load(e / "ckpt" / "diverging.pt", weights_only=True)
    assert st["step"] >= 1 and div["fired_step"] == st["step"] and div["step"] == st["step"] - 1


def test_probes_do_not_change_the_trajectory(tmp_path, tiny_overrides):
    over = tiny_overrides + ["train.epochs=1"]
    a = train(None, tmp_path / "a", over, progress=False)
    probes = "probes=[{name: activation_moments, every: 3}, {name: output_bias, at: [0, 10]}]"
    b = train(None, tmp_path / "b", over + [probes], progress=False)
    wa = (
        torch.load(list_checkpoints(a / "ckpt")[-1], weights_only=True)
        if list_checkpoints(a / "ckpt")
        else None
    )
    assert _final(a)[0]["test_loss"] == _final(b)[0]["test_loss"]
    assert _final(a)[0]["train_loss"] == _final(b)[0]["train_loss"]
    assert (b / "probes" / "activation_moments.jsonl").exists()
    steps = {json.loads(x)["step"] for x in (b / "probes" / "output_bias.jsonl").read_text().splitlines()}
    assert steps == {0}  # step 10 is past the 8-step budget
    del wa


def test_probe_only_run(tmp_path, tiny_overrides):
    over = tiny_overrides + ["train.steps=0", "probes=[{name: output_bias, at: [0]}]"]
    d = train(None, tmp_path, over, progress=False)
    assert RunDir(d).state() == "complete"
    assert (d / "probes" / "output_bias.jsonl").exists()


def test_missing_data_writes_nothing(tmp_path, monkeypatch):
    cfg = resolve(None, ["data.root=" + str(tmp_path / "nowhere"), "model.depth=8"])
    from bnlab.errors import UserError

    # hermetic: neither a real copy in ~/.cache/bnlab (a full training run) nor the network (a download)
    monkeypatch.delenv("BNLAB_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("BNLAB_OFFLINE", "1")
    with pytest.raises(UserError, match="data.root"):
        run(cfg, tmp_path / "runs" / run_id(cfg), progress=False)
    assert not (tmp_path / "runs").exists()


def test_sync_every_reads_losses_in_batches_without_changing_results(tmp_path, tiny_overrides):
    a = train(None, tmp_path / "a", tiny_overrides, progress=False)
    b = train(None, tmp_path / "b", tiny_overrides + ["train.sync_every=5"], progress=False)
    sa, sb = _final(a)[0], _final(b)[0]
    for k in ("train_loss", "train_acc", "test_loss", "test_acc", "first_loss", "last10_loss"):
        assert sa[k] == sb[k], k


def test_sync_every_reports_the_exact_diverging_step(tmp_path, tiny_overrides):
    over = tiny_overrides + ["model.norm=none", "optim.lr=5.0", "train.divergence.threshold=5"]
    a = RunDir(train(None, tmp_path / "a", over, progress=False)).status()
    b = RunDir(train(None, tmp_path / "b", over + ["train.sync_every=7"], progress=False)).status()
    assert a["state"] == b["state"] == "diverged"
    assert a["step"] == b["step"] and a["loss"] == b["loss"]


def test_tensorboard_events_when_installed(tmp_path, tiny_overrides):
    pytest.importorskip("tensorboard", reason="the tb extra is not installed (pip install 'bnlab[tb]')")
    d = train(None, tmp_path, tiny_overrides, progress=False)
    assert list((d / "tb").glob("events.out.tfevents.*"))
