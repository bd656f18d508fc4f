import json
import os
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import torch

from bnlab.probes.result import ProbeResult
from bnlab.store import RunDir, RunLock, load_probes, write_probe
from bnlab.store.checkpoint import list_checkpoints, load_latest, save_checkpoint
from bnlab.store.files import append_line, atomic_write_json, read_jsonl
from bnlab.store.probe_files import read_probe_arrays


def test_atomic_write_leaves_no_temp_files(tmp_path):
    atomic_write_json(tmp_path / "a.json", {"x": 1})
    atomic_write_json(tmp_path / "a.json", {"x": 2})
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": 2}
    assert sorted(os.listdir(tmp_path)) == ["a.json"]


def test_atomic_write_killed_midway_keeps_old_file(tmp_path):
    target = tmp_path / "s.json"
    atomic_write_json(target, {"old": True})
    code = (
        "import os; os.environ['BNLAB_FAULT']='atomic_write:1';"
        "from bnlab.store.files import atomic_write_json;"
        f"atomic_write_json({str(target)!r}, {{'new': True}})"
    )
    proc = subprocess.run([sys.executable, "-c", code])
    assert proc.returncode == -9
    assert json.loads(target.read_text()) == {"old": True}


def test_jsonl_torn_last_line_is_dropped(tmp_path):
    p = tmp_path / "m.jsonl"
    append_line(p, {"step": 1})
    append_line(p, {"step": 2})
    with open(p, "a") as f:
        f.write('{"step": 3, "lo')
    rows, torn = read_jsonl(p)
    assert rows == [{"step": 1}, {"step": 2}] and torn


def test_truncate_metrics_dedups_and_cuts(tmp_path):
    rd = RunDir(tmp_path)
    for s in (1, 2, 2, 3):
        rd.append_metric({"step": s, "epoch": s, "split": "test"})
    warnings = rd.truncate_metrics(2)
    assert [r["step"] for r in rd.read_metrics()] == [1, 2]
    assert warnings == []  # a duplicate and a later row are dropped silently: they are written again


def test_checkpoint_checksum_falls_back_to_previous(tmp_path):
    save_checkpoint(tmp_path, {"w": torch.ones(3), "step": 1}, 1)
    p2 = save_checkpoint(tmp_path, {"w": torch.zeros(3), "step": 2}, 2)
    data = p2.read_bytes()
    p2.write_bytes(data[: len(data) // 2])  # truncated
    state, warnings = load_latest(tmp_path)
    assert state["step"] == 1 and torch.equal(state["w"], torch.ones(3))
    assert warnings and "checksum" in warnings[0]


def test_checkpoint_keeps_last_k(tmp_path):
    for s in range(5):
        save_checkpoint(tmp_path, {"step": s}, s, keep=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-000000003.pt", "step-000000004.pt"]


def test_checkpoint_refuses_code_objects(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path}/PWNED",))

    import pickle

    from bnlab.store.rundir import sha256_bytes

    blob = pickle.dumps({"x": Evil()})
    (tmp_path / "step-000000001.pt").write_bytes(blob)
    (tmp_path / "step-000000001.sha256").write_text(sha256_bytes(blob))
    state, warnings = load_latest(tmp_path)
    assert state is None and warnings
    assert not (tmp_path / "PWNED").exists()


def test_lock_exclusive_and_stale_recovery(tmp_path):
    a = RunLock(tmp_path)
    assert a.acquire()
    assert not RunLock(tmp_path).acquire()
    a.release()
    # a lock left by a dead process is stale
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    import socket

    (tmp_path / "lock").write_text(f"{proc.stdout.strip()} {socket.gethostname()} 0\n")
    assert RunLock(tmp_path).acquire()


def test_write_probe_replaces_same_step(tmp_path):
    root = tmp_path
    tmp_path = root / "run1"
    r = ProbeResult.from_rows(
        [{"probe": "p", "layer": "a", "metric": "m", "value": 1.0}], {"x": np.arange(3)}, norm_stats="none"
    )
    write_probe(tmp_path, "p", r, step=0)
    write_probe(tmp_path, "p", r, step=0)
    write_probe(tmp_path, "p", r, step=5)
    (tmp_path / "config.yaml").write_text("{}")
    df = load_probes(root, "p")
    assert sorted(df["step"].tolist()) == [0, 5]
    assert df["norm_stats"].iloc[0] == "none"
    by_step, notes = read_probe_arrays(tmp_path / "probes", "p")
    assert sorted(by_step) == [0, 5] and not notes
    np.testing.assert_array_equal(by_step[5]["x"], np.arange(3))
    assert isinstance(df, pd.DataFrame)


def test_killed_writer_debris_is_cleaned_and_files_are_readable(tmp_path):
    target = tmp_path / "r.json"
    code = (
        "import os; os.environ['BNLAB_FAULT']='atomic_write:1';"
        "from bnlab.store.files import atomic_write_json;"
        f"atomic_write_json({str(target)!r}, {{'a': 1}})"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == -9
    assert list(tmp_path.glob(".r.json.*.tmp"))  # the killed writer left its temp file
    atomic_write_json(target, {"a": 2})
    assert not list(tmp_path.glob(".r.json.*.tmp"))
    assert target.stat().st_mode & 0o044  # group/other can read, as with a plain open()


def test_a_live_writers_temp_file_is_left_alone(tmp_path):
    """Two sweeps may write one meta.json at once: only a dead writer's temp file is debris."""
    live = tmp_path / f".m.json.{os.getppid()}.x1y2.tmp"  # the parent process is alive
    live.write_text("{}")
    atomic_write_json(tmp_path / "m.json", {"a": 1})
    assert live.exists()


def test_process_gone_tells_ended_from_live_and_zombie_processes():
    from bnlab.store.files import process_gone

    assert not process_gone(os.getpid())
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.time() + 30
    while time.time() < deadline:  # exited, not reaped yet: a zombie
        with open(f"/proc/{child.pid}/stat") as f:
            if f.read().split(")")[-1].split()[0] == "Z":
                break
        time.sleep(0.05)
    assert not process_gone(child.pid)  # the temp-file sweeper leaves a zombie's files
    assert process_gone(child.pid, zombie=True)  # a lock held by a zombie is stale
    child.wait()
    assert process_gone(child.pid) and process_gone(child.pid, zombie=True)
