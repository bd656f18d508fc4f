"""A real two-node Ray cluster on this machine (`ray start --head`, `ray start --address`, one CPU each):
`bnlab reproduce --executor ray --address <head>` while the worker node's raylet is killed mid-sweep;
every run finishes exactly once, the report is built, and the nodes are stopped (by their process ids)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.ray


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pids_with(text: str) -> list[int]:
    """Processes whose command line contains `text` (the cluster's own temp dir: only what this test started)."""
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if text in (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                    out.append(int(p.name))
            except OSError:
                pass
    return out


def _kill(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def _stop_cluster(temp_dir: str) -> None:
    _kill(_pids_with(temp_dir), signal.SIGTERM)
    deadline = time.monotonic() + 10
    while _pids_with(temp_dir) and time.monotonic() < deadline:
        time.sleep(0.5)
    _kill(_pids_with(temp_dir), signal.SIGKILL)
    while _pids_with(temp_dir) and time.monotonic() < deadline + 10:
        time.sleep(0.2)  # SIGKILLed processes take a moment to leave /proc
    shutil.rmtree(temp_dir, ignore_errors=True)


def _running(root: Path) -> int:
    from bnlab.store import RunDir

    return sum(RunDir(d).state() == "running" for d in root.glob("*") if (d / "status.json").exists())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the nodes' processes in /proc")
def test_two_node_cluster_sweep_survives_a_killed_worker_node(tmp_path):
    pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'bnlab[ray]')")
    ray_cli = str(Path(sys.executable).parent / "ray")
    temp_dir = tempfile.mkdtemp(prefix="br", dir="/tmp")  # Unix socket paths must stay under 107 bytes
    head = f"127.0.0.1:{_free_port()}"
    worker_port = _free_port()
    env = {
        **os.environ,
        "RAY_AUTH_MODE": "disabled",  # one mode for head, worker and driver (ray >= 2.5x defaults differ)
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_health_check_period_ms": "1000",  # a dead node is noticed in seconds, not ~30 s
        "RAY_health_check_failure_threshold": "3",
        "BNLAB_TRACE_RUNS": str(tmp_path / "trace"),  # the workers inherit it from their node
    }
    common = ["--num-cpus", "1", "--temp-dir", temp_dir, "--object-store-memory", str(80 * 2**20)]
    root = tmp_path / "runs"
    try:
        subprocess.run(
            [ray_cli, "start", "--head", "--port", head.split(":")[1], "--include-dashboard", "false", *common],
            env=env, check=True, capture_output=True, timeout=300,  # ~10 s unloaded
        )  # fmt: skip
        subprocess.run(
            [ray_cli, "start", "--address", head, "--node-manager-port", str(worker_port), *common],
            env=env, check=True, capture_output=True, timeout=300,  # ~10 s unloaded
        )  # fmt: skip
        sweep = subprocess.Popen(
            [
                sys.executable, "-m", "bnlab.cli.main", "reproduce", "--profile", "smoke", "--only", "E12b",
                "--set", "data.name=synthetic", "--runs", str(root), "--executor", "ray", "--address", head,
            ],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        deadline = time.monotonic() + 120
        while _running(root) < 2 and sweep.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)  # both nodes busy: one run is on the worker node
        raylets = [p for p in _pids_with(f"--node_manager_port={worker_port}") if p != sweep.pid]
        assert _running(root) == 2 and raylets, "the sweep never had a run on each node"
        _kill(raylets, signal.SIGKILL)  # the worker node's raylet dies mid-sweep
        out, err = sweep.communicate(timeout=150)
        assert sweep.returncode == 0, err[-2000:]
    finally:
        if "sweep" in locals() and sweep.poll() is None:
            sweep.kill()
        _stop_cluster(temp_dir)
    assert not _pids_with(temp_dir)  # the nodes are gone
    from bnlab.store import load_runs

    runs = load_runs(root)
    assert len(runs) == 3 and set(runs["state"]) == {"complete"}
    done = [x.split(":")[0] for x in (tmp_path / "trace.done").read_text().split()]
    assert sorted(done) == sorted(runs["run_id"])  # every run finished exactly once
    assert (root / "report" / "report.html").exists() and out.strip().splitlines()[-1].endswith("report.html")
