"""Issue 14 (data loss, corrupt files) and issue 15 (interrupted runs): links out of a run directory,
silently lost data, damaged files quarantined, Ctrl-C before and after a checkpoint, ENOSPC in a sweep."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout

import numpy as np
import pytest
import torch
import yaml

import bnlab.training
from bnlab.cli.main import main
from bnlab.store import RunDir, load_runs
from bnlab.store.checkpoint import list_checkpoints
from bnlab.training import train
from bnlab.training.observers import Observer

OVER = ["train.epochs=2", "train.checkpoint_every=0.5"]


def _cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def _sets(over: list[str]) -> list[str]:
    return [a for o in over for a in ("--set", o)]


class _Interrupt(Observer):
    """Ctrl-C at a given step (raised where the loop is, as SIGINT would be)."""

    def __init__(self, at: int) -> None:
        self.at = at

    def before_update(self, step: int) -> None:
        if step == self.at:
            raise KeyboardInterrupt


@pytest.fixture
def over(tiny_overrides):
    return tiny_overrides + OVER  # 16 steps, a checkpoint every 4


def _metrics_key(d):
    return [(r["step"], r["split"]) for r in RunDir(d).read_metrics()]


# --- links ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("what", ["probes", "metrics.jsonl"])
def test_link_out_of_a_run_directory_is_refused_and_the_target_untouched(tmp_path, over, what):
    d = train(None, tmp_path / "runs", over + ["train.steps=3", "train.epochs=null"], progress=False)
    RunDir(d).status_file.unlink()  # unfinished again: a rerun would reset it
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.txt").write_text("keep me")
    target = outside if what == "probes" else outside / "precious.txt"
    if (d / what).is_dir():
        for p in (d / what).iterdir():
            p.unlink()
        (d / what).rmdir()
    else:
        (d / what).unlink(missing_ok=True)
    (d / what).symlink_to(target)
    code, _, err = _cli(
        [
            "train",
            "--quiet",
            "--runs",
            str(tmp_path / "runs"),
            *_sets(over + ["train.steps=3", "train.epochs=null"]),
        ]
    )
    assert code == 2 and "symbolic link" in err and err.count("\n") == 1, err
    assert (outside / "precious.txt").read_text() == "keep me"
    assert [p.name for p in outside.iterdir()] == ["precious.txt"]


def test_runs_root_that_is_a_link_is_allowed(tmp_path, over):
    (tmp_path / "real").mkdir()
    (tmp_path / "runs").symlink_to(tmp_path / "real")
    d = train(None, tmp_path / "runs", over, progress=False)
    assert RunDir(d).state() == "complete"


# --- silently lost data --------------------------------------------------------------------------------
def test_probe_npz_with_an_object_array_is_quarantined_and_its_other_arrays_kept(tmp_path):
    from bnlab.probes.result import ProbeResult
    from bnlab.store import write_probe

    npz = tmp_path / "probes" / "p.npz"
    npz.parent.mkdir()
    good = {f"step{s}/a": np.arange(3.0) + s for s in range(6)}
    np.savez(npz, **good, **{"step0/bad": np.array([{"x": 1}], dtype=object)})
    res = ProbeResult.from_rows(
        [{"probe": "p", "layer": "m", "metric": "v", "value": 1.0}], norm_stats="none"
    )
    res.arrays = {"a": np.ones(2)}
    write_probe(tmp_path, "p", res, step=7)
    with np.load(npz) as z:
        assert set(z.files) == {*good, "step7/a"}  # 6 earlier arrays kept + the new one
    assert (tmp_path / "probes" / "p.npz.corrupt-1").exists()
    assert any("p.npz.corrupt-1" in w for w in RunDir(tmp_path).status()["warnings"])


def test_deleted_metrics_are_restored_from_the_checkpoint(tmp_path, over):
    clean = train(None, tmp_path / "clean", over, progress=False)
    with pytest.raises(KeyboardInterrupt):
        bnlab.training.loop.run(
            bnlab.tasks.resolve(None, over),
            tmp_path / "cut" / clean.name,
            progress=False,
            observers=[_Interrupt(12)],
        )
    d = tmp_path / "cut" / clean.name
    (d / "metrics.jsonl").unlink()
    train(None, tmp_path / "cut", over, progress=False)
    assert _metrics_key(d) == _metrics_key(clean)  # all rows, none lost
    assert any("restored from the checkpoint" in w for w in RunDir(d).status()["warnings"])


def test_edited_config_is_left_out_where_runs_are_read(tmp_path, over):
    d = train(None, tmp_path, over, progress=False)
    d2 = train(None, tmp_path, over + ["optim.lr=0.05"], progress=False)
    assert set(load_runs(tmp_path)["run_id"]) == {d.name, d2.name}
    cfg = yaml.safe_load((d / "config.yaml").read_text())
    cfg["optim"]["lr"] = 0.003
    (d / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    df = load_runs(tmp_path)
    assert list(df["run_id"]) == [d2.name]
    assert any(d.name in s and "edited" in s for s in df.attrs["skipped"])
    cfg["kind"] = "monitor"  # a Monitor's run carries its own id rule: not checked here
    from bnlab.store import expected_run_id

    assert expected_run_id(cfg) is None


# --- damaged files -------------------------------------------------------------------------------------
def _damage_npz(d):
    p = d / "probes" / "x.npz"
    np.savez_compressed(p, **{"step0/a": np.arange(1000.0)})
    data = bytearray(p.read_bytes())
    p.write_bytes(bytes(data[: len(data) // 2]))


@pytest.mark.parametrize(
    "damage",
    [
        "npz_truncated",
        "metrics_42",
        "metrics_bad_step",
        "metrics_garbage_middle",
        "status_list",
        "status_int",
        "ckpt_other_arch",
        "ckpt_missing_key",
    ],
)
def test_damaged_file_is_set_aside_and_the_run_finishes(tmp_path, over, damage):
    clean = train(None, tmp_path / "clean", over, progress=False)
    d = tmp_path / "cut" / clean.name
    with pytest.raises(KeyboardInterrupt):
        bnlab.training.loop.run(
            bnlab.tasks.resolve(None, over), d, progress=False, observers=[_Interrupt(12)]
        )
    m = d / "metrics.jsonl"
    if damage == "npz_truncated":
        _damage_npz(d)
        from bnlab.probes.result import ProbeResult
        from bnlab.store import write_probe

        res = ProbeResult.from_rows(
            [{"probe": "x", "layer": "m", "metric": "v", "value": 1.0}], norm_stats="none"
        )
        res.arrays = {"a": np.ones(2)}
        write_probe(d, "x", res, step=1)
        assert (d / "probes" / "x.npz.corrupt-1").exists()
    elif damage.startswith("metrics"):
        lines = m.read_text().splitlines()
        bad = {
            "metrics_42": "42",
            "metrics_bad_step": '{"step": "x", "split": "test"}',
            "metrics_garbage_middle": "@@garbage",
        }[damage]
        m.write_text("\n".join([*lines[:2], bad, *lines[2:]]) + "\n")
    elif damage.startswith("status"):
        (d / "status.json").write_text("[1, 2]" if damage == "status_list" else "7")
        assert RunDir(d).state() == "pending"  # readable, not a traceback
    else:
        newest = list_checkpoints(d / "ckpt")[-1]
        state = torch.load(newest, weights_only=True)
        if damage == "ckpt_other_arch":
            state["model"] = {k + ".other": v for k, v in state["model"].items()}
        else:
            del state["acc"]
        buf = io.BytesIO()
        torch.save(state, buf)
        newest.write_bytes(buf.getvalue())
        import hashlib

        newest.with_suffix(".sha256").write_text(hashlib.sha256(buf.getvalue()).hexdigest() + "\n")
    train(None, tmp_path / "cut", over, progress=False)  # resumes from what is intact
    st = RunDir(d).status()
    assert st["state"] == "complete", st
    assert _metrics_key(d) == _metrics_key(clean)
    if damage != "npz_truncated":
        assert any("set aside" in w for w in st["warnings"]), st["warnings"]
        assert list(d.rglob("*.corrupt-1"))
    if damage.startswith("ckpt"):  # the older checkpoint was used: same final weights as a clean run
        a = torch.load(list_checkpoints(clean / "ckpt")[-1], weights_only=True)["model"]
        b = torch.load(list_checkpoints(d / "ckpt")[-1], weights_only=True)["model"]
        assert all(torch.equal(a[k], b[k]) for k in a)


# --- interrupted runs (issue 15) ----------------------------------------------------------------------
@pytest.mark.parametrize("at,resumes_from", [(3, 0), (14, 12)])
def test_interrupt_says_what_the_rerun_does(tmp_path, over, monkeypatch, at, resumes_from):
    real = bnlab.training.run
    monkeypatch.setattr(
        bnlab.training, "run", lambda cfg, d, **kw: real(cfg, d, observers=[_Interrupt(at)], **kw)
    )
    code, _, err = _cli(["train", "--quiet", "--runs", str(tmp_path), *_sets(over)])
    assert code == 130
    expect = (
        "no checkpoint yet: the rerun starts from step 0"
        if resumes_from == 0
        else f"resumes from step {resumes_from}"
    )
    assert expect in err, err
    (d,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert RunDir(d).state() == "interrupted"
    code, out, _ = _cli(["status", str(tmp_path)])
    assert code == 0 and "interrupted" in out and "running" not in out
    assert max(len(line) for line in out.splitlines()) <= 80
    monkeypatch.setattr(bnlab.training, "run", real)
    code, _, err = _cli(["train", "--runs", str(tmp_path), *_sets(over)])
    assert code == 0
    assert (f"resuming from step {resumes_from}" in err) == (resumes_from > 0), err
    assert RunDir(d).state() == "complete"


def test_killed_process_reads_as_interrupted(tmp_path, over):
    code = f"from bnlab.training import train; train(None, {str(tmp_path)!r}, {over!r}, progress=False)"
    proc = subprocess.run([sys.executable, "-c", code], env={**os.environ, "BNLAB_FAULT": "metrics_append:3"})
    assert proc.returncode == -9
    (d,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert json.loads((d / "status.json").read_text())["state"] == "running"  # as written by the dead process
    st = RunDir(d).status()
    assert st["state"] == "interrupted" and "is gone" in st["reason"]


def test_status_schema_1_is_still_read(tmp_path):
    (tmp_path / "status.json").write_text(
        json.dumps({"state": "running", "step": 4, "reason": None, "loss": None, "warnings": [], "schema": 1})
    )
    assert RunDir(tmp_path).status()["state"] == "running"  # no pid recorded: cannot be judged gone


# --- disk full in a sweep -----------------------------------------------------------------------------
def test_enospc_sweep_stops_nonzero_and_a_plain_rerun_finishes(tmp_path, tiny_overrides):
    from bnlab.sweeps.local import run_local
    from bnlab.tasks import resolve

    cfgs = [resolve(None, tiny_overrides + ["train.epochs=1", f"optim.lr={lr}"]) for lr in (0.1, 0.05)]
    os.environ["BNLAB_FAULT_ENOSPC"] = "metrics_append:3"
    try:
        from bnlab.store import files

        files._FAULT_COUNTS.clear()
        with pytest.raises(OSError):
            run_local(cfgs, tmp_path, workers=1)
    finally:
        del os.environ["BNLAB_FAULT_ENOSPC"]
    states = {RunDir(p).state() for p in tmp_path.iterdir()}
    assert "failed" not in states and "interrupted" in states
    res = run_local(cfgs, tmp_path, workers=1)  # no --retry-failed needed
    assert set(res.states.values()) == {"complete"}
