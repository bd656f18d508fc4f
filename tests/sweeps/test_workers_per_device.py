"""--workers-per-device N: N runs share one device, each in its own worker process (here: the CPU, N = 2)."""

import threading
import time

import pytest

from bnlab.analyses.spec import load_spec
from bnlab.errors import UserError
from bnlab.store import RunDir
from bnlab.sweeps.local import worker_devices
from bnlab.sweeps.runner import run_specs


def test_two_workers_per_device_run_two_at_once_each_run_once(tmp_path, tiny_spec, monkeypatch):
    monkeypatch.delenv("BNLAB_LOCAL_WORKERS", raising=False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # the CPU is the one device, also on a GPU machine
    monkeypatch.setenv("BNLAB_TRACE_RUNS", str(tmp_path / "trace"))
    root = tmp_path / "runs"
    result, in_flight = {}, []

    def sweep():
        result["res"] = run_specs([load_spec(tiny_spec)], "smoke", root, workers_per_device=2, measure=False)

    t = threading.Thread(target=sweep)
    t.start()
    while t.is_alive():  # how many runs are in state "running" (a live writer) at each moment
        dirs = [d for d in root.glob("*") if (d / "status.json").exists()] if root.exists() else []
        in_flight.append(sum(RunDir(d).state() == "running" for d in dirs))
        time.sleep(0.05)
    t.join()
    res = result["res"]
    assert len(res.ran) == 4 and set(res.states.values()) == {"complete"}, res
    assert max(in_flight) == 2  # two runs in flight at once, never more
    starts = [x.split(":") for x in (tmp_path / "trace").read_text().split()]
    dones = [x.split(":")[0] for x in (tmp_path / "trace.done").read_text().split()]
    assert sorted(r for r, _ in starts) == sorted(dones) == sorted(res.states)  # each run executed once
    assert len({pid for _, pid in starts}) == 2  # by two worker processes
    again = run_specs([load_spec(tiny_spec)], "smoke", root, workers_per_device=2, measure=False)
    assert len(again.skipped) == 4 and not again.ran  # finished runs are not started again
    assert len((tmp_path / "trace").read_text().split()) == 4


def test_workers_per_device_layout_and_bad_values(monkeypatch):
    monkeypatch.delenv("BNLAB_LOCAL_WORKERS", raising=False)
    import torch

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert worker_devices(1) == ["0", "1"]
    assert worker_devices(3) == ["0", "0", "0", "1", "1", "1"]  # each pinned to its GPU
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert worker_devices(1) == [None] and worker_devices(4) == ["0"] * 4
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    assert worker_devices(2) == [None, None]  # CPU workers
    with pytest.raises(UserError, match="--workers-per-device must be >= 1"):
        worker_devices(0)


def test_workers_per_device_is_refused_by_other_executors(tmp_path, tiny_spec):
    with pytest.raises(UserError, match="local executor only"):
        run_specs([load_spec(tiny_spec)], "smoke", tmp_path, executor="ray", workers_per_device=2)
