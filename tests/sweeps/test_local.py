import json
import os
import signal
import subprocess
import sys
import time

from bnlab.analyses.spec import load_spec
from bnlab.store import load_runs
from bnlab.sweeps.runner import run_specs


def _metrics_ok(root):
    for d in root.iterdir():
        m = d / "metrics.jsonl"
        if m.exists():
            lines = [json.loads(x) for x in m.read_text().splitlines()]
            keys = [(x["step"], x["epoch"], x["split"]) for x in lines]
            assert len(keys) == len(set(keys)), f"duplicated metric lines in {d.name}"


def test_four_run_sweep_expands_runs_and_skips_on_rerun(tmp_path, tiny_spec):
    spec = load_spec(tiny_spec)
    assert len(spec.configs("smoke")) == 4
    res = run_specs([spec], "smoke", tmp_path / "runs", measure=False)
    assert len(res.ran) == 4 and not res.skipped
    df = load_runs(tmp_path / "runs")
    assert len(df) == 4 and set(df["state"]) == {"complete"}
    assert sorted(df["optim.lr"].unique()) == [0.01, 0.05]
    meta = json.loads((tmp_path / "runs" / df["run_id"][0] / "meta.json").read_text())
    assert meta["experiments"] == ["T1/smoke"]
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "runs").glob("*/summary.json")}
    res2 = run_specs([spec], "smoke", tmp_path / "runs", measure=False)
    assert len(res2.skipped) == 4 and not res2.ran
    assert stamps == {p: p.stat().st_mtime_ns for p in (tmp_path / "runs").glob("*/summary.json")}


def _sweep_cmd(spec, runs):
    return [sys.executable, "-m", "bnlab.cli.main", "sweep", str(spec), "--runs", str(runs)]


def test_two_concurrent_sweeps_split_the_work(tmp_path, tiny_spec):
    runs = tmp_path / "runs"
    env = {**os.environ, "BNLAB_TRACE_RUNS": str(tmp_path / "trace")}
    a = subprocess.Popen(
        _sweep_cmd(tiny_spec, runs), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    b = subprocess.Popen(
        _sweep_cmd(tiny_spec, runs), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    assert a.wait(timeout=600) == 0 and b.wait(timeout=600) == 0
    df = load_runs(runs)
    assert len(df) == 4 and set(df["state"]) == {"complete"}
    # every run was executed exactly once across both processes
    starts = [x.split(":")[0] for x in (tmp_path / "trace").read_text().split()]
    assert sorted(starts) == sorted(df["run_id"]), starts
    _metrics_ok(runs)


def test_sweep_killed_at_random_moments_completes_without_repeats(tmp_path, tiny_spec):
    runs = tmp_path / "runs"
    clean = tmp_path / "clean"
    assert (
        subprocess.run(
            _sweep_cmd(tiny_spec, clean), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        ).returncode
        == 0
    )
    env = {**os.environ, "BNLAB_TRACE_RUNS": str(tmp_path / "trace")}
    import random

    rng = random.Random(0)
    for _ in range(4):
        p = subprocess.Popen(
            _sweep_cmd(tiny_spec, runs),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        time.sleep(rng.uniform(1.0, 6.0))
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
    assert (
        subprocess.run(
            _sweep_cmd(tiny_spec, runs), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        ).returncode
        == 0
    )
    a, b = load_runs(clean).set_index("run_id"), load_runs(runs).set_index("run_id")
    assert set(b["state"]) == {"complete"}
    cols = [c for c in a.columns if c.startswith("summary.") and c.endswith(("loss", "acc"))]
    assert (a.loc[b.index, cols] == b[cols]).all().all()
    _metrics_ok(runs)
    # a run that completed was never started again
    trace = [x.split(":")[0] for x in (tmp_path / "trace").read_text().split()]
    for rid in b.index:
        finished_before = trace.count(rid)
        assert finished_before >= 1
    done_file = tmp_path / "trace.done"
    completions = [x.split(":")[0] for x in done_file.read_text().split()] if done_file.exists() else []
    assert len(completions) == len(set(completions)), "a completed run was executed again"


def test_local_workers_split_a_sweep(tmp_path, tiny_spec, monkeypatch):
    """With several workers (one per GPU on a multi-GPU box; forced here) the runs are split, each run once."""
    monkeypatch.setenv("BNLAB_LOCAL_WORKERS", "2")
    monkeypatch.setenv("BNLAB_TRACE_RUNS", str(tmp_path / "trace"))
    spec = load_spec(tiny_spec)
    res = run_specs([spec], "smoke", tmp_path / "runs", measure=False)
    assert len(res.ran) == 4 and set(res.states.values()) == {"complete"}
    starts = [x.split(":") for x in (tmp_path / "trace").read_text().split()]
    assert sorted(r for r, _ in starts) == sorted(res.states)  # each run executed exactly once
    assert len({pid for _, pid in starts}) == 2  # by two worker processes
