"""`bnlab reproduce` killed with SIGKILL at random moments (runs and report building), then rerun."""

import json
import os
import random
import signal
import subprocess
import sys
import time

from bnlab.store import load_runs


def _cmd(spec, runs):
    return [sys.executable, "-m", "bnlab.cli.main", "reproduce", "--only", str(spec), "--runs", str(runs)]


def test_reproduce_killed_at_random_moments_then_rerun(tmp_path, tiny_spec):
    runs = tmp_path / "runs"
    clean = tmp_path / "clean"
    assert subprocess.run(_cmd(tiny_spec, clean), capture_output=True).returncode == 0
    env = {**os.environ, "BNLAB_TRACE_RUNS": str(tmp_path / "trace")}
    rng = random.Random(1)
    for _ in range(3):
        p = subprocess.Popen(
            _cmd(tiny_spec, runs),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        time.sleep(rng.uniform(1.0, 8.0))
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
    # and once while the report is being built (after its figures, before its pages)
    done = subprocess.run(_cmd(tiny_spec, runs), env={**env, "BNLAB_FAULT": "report:1"}, capture_output=True)
    assert done.returncode == -9
    final = subprocess.run(_cmd(tiny_spec, runs), env=env, capture_output=True, text=True)
    assert final.returncode == 0, final.stderr
    report = runs / "report" / "report.html"
    assert final.stdout.strip().splitlines()[-1] == str(report) and report.stat().st_size > 1000
    assert not list((runs / "report").glob(".*.tmp"))
    a, b = load_runs(clean).set_index("run_id"), load_runs(runs).set_index("run_id")
    assert set(b["state"]) == {"complete"} and len(b) == 4
    cols = [c for c in a.columns if c.startswith("summary.") and c.endswith(("loss", "acc"))]
    assert (a.loc[b.index, cols] == b[cols]).all().all()
    done_file = tmp_path / "trace.done"
    completions = [x.split(":")[0] for x in done_file.read_text().split()] if done_file.exists() else []
    assert len(completions) == len(set(completions)), "a completed run was executed again"
    for d in runs.iterdir():
        if (d / "metrics.jsonl").exists():
            keys = [
                (r["step"], r["split"])
                for r in map(json.loads, (d / "metrics.jsonl").read_text().splitlines())
            ]
            assert len(keys) == len(set(keys))
    del done
