"""A real two-node Ray cluster on this machine (`ray start --head`, `ray start --address`, one CPU each):
`bnlab reproduce --executor ray --address <head>` while the worker node's raylet is killed mid-sweep;
every run finishes exactly once, the report is built, and the nodes are stopped.

Only this test's own processes are stopped, never `ray stop` (which stops every Ray node of the machine,
other people's included): every process the nodes start inherits a tag in its environment (a Ray worker
rewrites its command line, not its environment), and the finally-block signals exactly those. Every wait is
bounded by one overall budget; a failure says which step failed and shows that step's output."""

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

BUDGET_S = 900  # the whole test, at most (~60 s on an idle 2-core machine)
START_S = 300  # each `ray start` (~10 s idle; minutes on a machine loaded by other jobs)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:  # gone, or not ours to read
        return b""


def _tagged(tag: str) -> list[int]:
    """This test's processes: those whose environment carries `tag` (see the module docstring)."""
    needle = f"BNLAB_RAY_TEST_TAG={tag}".encode()
    return [
        int(p.name)
        for p in Path("/proc").iterdir()
        if p.name.isdigit() and int(p.name) != os.getpid() and needle in _read(p / "environ").split(b"\0")
    ]


def _with_arg(text: str, pids: list[int]) -> list[int]:
    return [
        p
        for p in pids
        if text in _read(Path(f"/proc/{p}/cmdline")).replace(b"\0", b" ").decode(errors="replace")
    ]


def _kill(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def _alive(tag: str) -> list[int]:
    """Tagged processes that have not exited (a zombie waits for its parent and holds nothing)."""
    return [p for p in _tagged(tag) if b") Z " not in _read(Path(f"/proc/{p}/stat"))]


def _stop_cluster(tag: str, temp_dir: str) -> None:
    """SIGTERM to every tagged process, SIGKILL after 15 s to what is left, wait for them to go."""
    _kill(_alive(tag), signal.SIGTERM)
    deadline = time.monotonic() + 15
    while _alive(tag) and time.monotonic() < deadline:
        time.sleep(0.5)
    _kill(_alive(tag), signal.SIGKILL)
    while _alive(tag) and time.monotonic() < deadline + 15:
        time.sleep(0.2)  # SIGKILLed processes take a moment to leave /proc
    shutil.rmtree(temp_dir, ignore_errors=True)


def _running(root: Path) -> int:
    from bnlab.store import RunDir

    return sum(RunDir(d).state() == "running" for d in root.glob("*") if (d / "status.json").exists())


def _ray_start(ray_cli: str, args: list[str], env: dict, timeout: float, what: str) -> None:
    try:
        r = subprocess.run(
            [ray_cli, "start", *args], env=env, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"`ray start` of the {what} took over {timeout:.0f} s: {(e.stderr or b'')[-2000:]!r}")
    assert r.returncode == 0, f"`ray start` of the {what} failed: {(r.stdout + r.stderr)[-3000:]}"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the nodes' processes in /proc")
def test_two_node_cluster_sweep_survives_a_killed_worker_node(tmp_path):
    pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'bnlab[ray]')")
    ray_cli = str(Path(sys.executable).parent / "ray")
    t_end = time.monotonic() + BUDGET_S

    def left(cap: float) -> float:
        return max(1.0, min(cap, t_end - time.monotonic()))

    temp_dir = tempfile.mkdtemp(prefix="br", dir="/tmp")  # Unix socket paths must stay under 107 bytes
    tag = f"{os.getpid()}-{Path(temp_dir).name}"
    head = f"127.0.0.1:{_free_port()}"
    worker_port = _free_port()
    env = {
        **os.environ,
        "BNLAB_RAY_TEST_TAG": tag,  # inherited by every process the nodes and the sweep start
        "RAY_AUTH_MODE": "disabled",  # one mode for head, worker and driver (ray >= 2.5x defaults differ)
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_health_check_period_ms": "1000",  # a dead node is noticed in seconds, not ~30 s
        "RAY_health_check_failure_threshold": "3",
        "BNLAB_TRACE_RUNS": str(tmp_path / "trace"),  # the workers inherit it from their node
    }

    def node_args() -> list[str]:  # fixed default ports would collide between two nodes on one machine
        return [
            "--num-cpus", "1", "--temp-dir", temp_dir, "--object-store-memory", str(80 * 2**20),
            "--dashboard-agent-listen-port", str(_free_port()), "--include-log-monitor", "false",
        ]  # fmt: skip

    root = tmp_path / "runs"
    sweep_log = tmp_path / "sweep.stderr"
    sweep = None
    try:
        head_args = ["--head", "--port", head.split(":")[1], "--include-dashboard", "false"]
        head_args += ["--ray-client-server-port", str(_free_port())]
        _ray_start(ray_cli, [*head_args, *node_args()], env, left(START_S), "head node")
        worker_args = ["--address", head, "--node-manager-port", str(worker_port)]
        _ray_start(ray_cli, [*worker_args, *node_args()], env, left(START_S), "worker node")
        with open(tmp_path / "sweep.stdout", "w") as out, open(sweep_log, "w") as err:  # files: no pipe fills
            sweep = subprocess.Popen(
                [
                    sys.executable, "-m", "bnlab.cli.main", "reproduce", "--profile", "smoke", "--only", "E12b",
                    "--set", "data.name=synthetic", "--runs", str(root), "--executor", "ray", "--address", head,
                ],  # the same runs as `planned` below
                env=env, stdout=out, stderr=err, text=True,
            )  # fmt: skip
        deadline = time.monotonic() + left(300)
        while _running(root) < 2 and sweep.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)  # both nodes busy: one run is on the worker node
        raylets = _with_arg(f"--node_manager_port={worker_port}", _tagged(tag))
        raylets = [p for p in raylets if "raylet" in _read(Path(f"/proc/{p}/comm")).decode()]
        assert _running(root) == 2 and raylets, (
            f"the sweep never had a run on each node (running {_running(root)}, worker raylet {raylets}, "
            f"sweep exit code {sweep.poll()}): {_read(sweep_log)[-2000:]!r}"
        )
        _kill(raylets, signal.SIGKILL)  # the worker node's raylet dies mid-sweep
        try:
            sweep.wait(timeout=left(600))
        except subprocess.TimeoutExpired:
            pytest.fail(
                f"the sweep did not finish within the test's {BUDGET_S} s: {_read(sweep_log)[-2000:]!r}"
            )
        assert sweep.returncode == 0, _read(sweep_log)[-2000:]
    finally:
        if sweep is not None and sweep.poll() is None:
            sweep.kill()
            sweep.wait(timeout=30)
        _stop_cluster(tag, temp_dir)
    assert not _alive(tag), "the nodes' processes are still running"
    from bnlab.analyses.spec import find_specs
    from bnlab.store import load_runs

    planned = find_specs(["E12b"])[0].configs("smoke", ["data.name=synthetic"])
    runs = load_runs(root)
    assert len(runs) == len(planned) >= 3 and set(runs["state"]) == {"complete"}
    done = [x.split(":")[0] for x in (tmp_path / "trace.done").read_text().split()]
    assert sorted(done) == sorted(runs["run_id"])  # every run finished exactly once
    started = [x.split(":")[0] for x in (tmp_path / "trace").read_text().split()]
    assert any(started.count(r) > 1 for r in done), "no run was cut short by the killed node and run again"
    out_lines = (tmp_path / "sweep.stdout").read_text().strip().splitlines()
    assert (root / "report" / "report.html").exists() and out_lines[-1].endswith("report.html")
