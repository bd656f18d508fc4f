"""The local executor: runs in this process, one after another, skipping finished runs; or in several
worker processes (one per GPU, `workers_per_device` per GPU, or that many on a CPU machine).

Concurrent sweeps on one runs root split the work through a lock per run directory: a run locked by
another live process is skipped and revisited at the end (waiting for that process), so every sweep
returns only when all its runs are finished; a stale lock from a dead process is taken over.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypedDict

from bnlab.config import Config, run_id
from bnlab.errors import UserError
from bnlab.store import RunDir, RunLock
from bnlab.store.files import atomic_write_json, read_json
from bnlab.tasks import execute, is_done


class SweepOptions(TypedDict, total=False):
    """The options every executor takes besides its configs and runs root (`run_local` spells them out)."""

    retry_failed: bool  # run again the runs that failed before (default False)
    force: bool  # run again the finished runs, replacing their results (default False)
    on_done: Callable[[str, str], None] | None  # called with (run id, state) as each run is recorded
    tags: list[list[str]] | None  # per config: the experiments (id/profile) its run belongs to


@dataclass
class SweepResult:
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # already finished
    failed: list[str] = field(default_factory=list)
    states: dict[str, str] = field(default_factory=dict)
    on_done: Callable[[str, str], None] | None = field(default=None, repr=False, compare=False)

    def record(self, name: str, state: str, *, ran: bool) -> None:
        self.states[name] = state
        (self.ran if ran else self.skipped).append(name)
        if state == "failed":
            self.failed.append(name)
        if self.on_done:
            self.on_done(name, state)

    def record_executed(self, run_dir: Path, outcome: Callable[[], str], failure: str) -> None:
        """Record a run that another process executed: its state is `outcome()`; if that raises (the worker
        died, the job failed), the run is marked failed with `failure` and the error, and the sweep goes on."""
        try:
            state = outcome()
        except Exception as e:  # noqa: BLE001 - a failed run is recorded; the sweep goes on
            mark_failed(run_dir, f"{failure}: {type(e).__name__}: {e}")
            state = "failed"
        self.record(run_dir.name, state, ran=True)


def start_sweep(
    configs: list[Config], runs_root: str | Path, sweep: SweepOptions
) -> tuple[SweepResult, list[tuple[Config, Path]]]:
    """The first step of an executor that hands runs to other processes (ray, slurm): prepare every run and
    record the finished ones; returns the result so far and the (config, run dir) pairs left to execute."""
    res = SweepResult(on_done=sweep.get("on_done"))
    todo = []
    runs = prepare(
        configs,
        Path(runs_root).resolve(),
        force=sweep.get("force", False),
        retry_failed=sweep.get("retry_failed", False),
        tags=sweep.get("tags"),
    )
    for cfg, d, done_before in runs:
        if done_before:
            res.record(d.name, RunDir(d).state(), ran=False)
        else:
            todo.append((cfg, d))
    return res, todo


def finished(cfg: Config, run_dir: Path, retry_failed: bool) -> bool:
    """Nothing to do for this run: its result is there, or it failed and failures are not retried."""
    return is_done(cfg, run_dir) or (RunDir(run_dir).state() == "failed" and not retry_failed)


def prepare(
    configs: list[Config], root: Path, *, force: bool, retry_failed: bool, tags: list[list[str]] | None
) -> list[tuple[Config, Path, bool]]:
    """(config, run dir, finished) per run, for every executor: --force resets finished runs, and each run
    records the experiments it belongs to."""
    root.mkdir(parents=True, exist_ok=True)
    out = []
    for i, cfg in enumerate(configs):
        d = root / run_id(cfg)
        if force and RunDir(d).is_terminal():
            _reset(d)
        if tags:
            d.mkdir(parents=True, exist_ok=True)
            record_membership(d, tags[i])
        out.append((cfg, d, finished(cfg, d, retry_failed)))
    return out


def mark_failed(run_dir: Path, reason: str) -> None:
    rd = RunDir(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    rd.set_status("failed", rd.status().get("step", 0), reason=reason[:300])


def _moved(meta: dict, tags: list[str], src: str, dst: str) -> dict:
    """meta.json with `tags` appended to its list `dst` (once each) and taken out of its list `src` (a `src`
    list it did not have is not added)."""
    have = list(meta.get(dst, []))
    out = {**meta, dst: have + [t for t in tags if t not in have]}
    if src in meta:
        out[src] = [t for t in meta[src] if t not in tags]
    return out


def record_membership(run_dir: Path, tags: list[str]) -> None:
    """meta.json: which experiments (id/profile) a run belongs to (not part of its id); a tag planned again
    leaves the run's `superseded` list."""
    meta = read_json(run_dir / "meta.json", {}) or {}
    new = [t for t in tags if t not in meta.get("experiments", [])]
    if new:
        atomic_write_json(run_dir / "meta.json", _moved(meta, new, "superseded", "experiments"))


def retire_membership(root: Path, planned: dict[str, set[str]]) -> dict[str, list[str]]:
    """Runs under `root` tagged with an experiment of this sweep (`planned`: tag -> the run ids of its current
    plan) that the plan no longer has — an earlier grid, or other --set values — would otherwise be mixed into
    its report. Their tag moves to meta.json's `superseded` list; the runs stay on disk, and a plan that asks
    for them again tags them again. Returns {tag: the run ids retired}."""
    retired: dict[str, list[str]] = {}
    for path in sorted(root.glob("*/meta.json")) if planned else ():
        meta = read_json(path, {}) or {}
        gone = [t for t in meta.get("experiments", []) if t in planned and path.parent.name not in planned[t]]
        if gone:
            atomic_write_json(path, _moved(meta, gone, "experiments", "superseded"))
        for t in gone:
            retired.setdefault(t, []).append(path.parent.name)
    return retired


def run_one(cfg: Config, run_dir: Path, *, retry_failed: bool, progress: bool) -> str | None:
    """Run (or resume) one run under its lock. Returns its final state, or None if locked elsewhere."""
    rd = RunDir(run_dir)
    if is_done(cfg, run_dir):
        return rd.state()
    if rd.state() == "failed" and not retry_failed:
        return "failed"
    lock = RunLock(run_dir)
    if not lock.acquire():
        return None
    try:
        if is_done(cfg, run_dir):  # finished by another process between the check and the lock
            return rd.state()
        try:
            return execute(cfg, run_dir, progress=progress)["state"]
        except (UserError, OSError):
            # OSError: a write failed (a full disk). The trainer left the run "interrupted" (resumable, not
            # failed), and the sweep stops: the next runs would fail the same way. Rerun once there is space.
            raise
        except Exception as e:  # noqa: BLE001 - a failing run is recorded and the sweep goes on
            tb = traceback.format_exc(limit=3)
            try:
                mark_failed(rd.path, f"{type(e).__name__}: {e}")
                (rd.path / "error.txt").write_text(tb)
            except OSError:
                raise e from None  # cannot even record the failure: stop the sweep, say why
            return "failed"
    finally:
        lock.release()


def worker_devices(per_device: int = 1) -> list[str | None]:
    """The GPU each local worker process is pinned to (its CUDA_VISIBLE_DEVICES; None: not pinned):
    `per_device` workers per visible GPU when there are several GPUs or `per_device` > 1 (small nets leave
    most of a GPU idle, so several runs share one); on a machine without a GPU, `per_device` CPU workers.
    BNLAB_LOCAL_WORKERS=N overrides: N unpinned workers (tests)."""
    if per_device < 1:
        raise UserError(f"--workers-per-device must be >= 1, got {per_device}")
    env = os.environ.get("BNLAB_LOCAL_WORKERS")
    if env:
        return [None] * max(1, int(env))
    import torch

    gpus = torch.cuda.device_count()
    if gpus == 0 or (gpus == 1 and per_device == 1):
        return [None] * per_device
    return [str(g) for g in range(gpus) for _ in range(per_device)]


def _worker(pin: str | None, n_workers: int, configs_json: list[dict], root: str, retry_failed: bool) -> None:
    """A worker process (pinned to GPU `pin` if given): runs the same list; the per-run locks split the work."""
    if pin is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = pin  # before CUDA is initialized in this process
    import torch

    if not torch.cuda.is_available():  # CPU workers share the cores rather than each taking all of them
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // n_workers))
    from bnlab.config import validate

    run_local([validate(c) for c in configs_json], root, retry_failed=retry_failed, workers=[None])


def _run_parallel(
    configs: list[Config],
    root: Path,
    workers: list[str | None],
    *,
    retry_failed: bool,
    force: bool,
    on_done: Callable[[str, str], None] | None,
    tags: list[list[str]] | None,
) -> SweepResult:
    """One spawned process per entry of `workers` over the same runs; the parent reports what finished."""
    import multiprocessing as mp

    runs = prepare(configs, root, force=force, retry_failed=retry_failed, tags=tags)
    payload = [c.model_dump(mode="json") for c in configs]
    with mp.get_context("spawn").Pool(len(workers)) as pool:
        pool.starmap(_worker, [(pin, len(workers), payload, str(root), retry_failed) for pin in workers])
    res = SweepResult(on_done=on_done)
    for _, d, done_before in runs:
        res.record(d.name, RunDir(d).state(), ran=not done_before)
    return res


def run_local(
    configs: list[Config],
    runs_root: str | Path,
    *,
    retry_failed: bool = False,
    force: bool = False,
    on_done: Callable[[str, str], None] | None = None,
    progress_runs: bool = False,
    tags: list[list[str]] | None = None,
    wait_s: float = 1.0,
    workers_per_device: int = 1,
    workers: int | list[str | None] | None = None,
) -> SweepResult:
    """Run the configs' runs here; with several workers (`worker_devices(workers_per_device)`, or `workers`:
    a count of unpinned workers, or the GPU each is pinned to) in that many spawned processes."""
    root = Path(runs_root)
    workers = worker_devices(workers_per_device) if workers is None else workers
    if isinstance(workers, int):
        workers = [None] * workers
    if len(workers) > 1:
        return _run_parallel(
            configs, root, workers, retry_failed=retry_failed, force=force, on_done=on_done, tags=tags
        )
    res = SweepResult(on_done=on_done)
    pending = [
        (cfg, d) for cfg, d, _ in prepare(configs, root, force=force, retry_failed=retry_failed, tags=tags)
    ]
    while pending:
        busy: list[tuple[Config, Path]] = []
        for cfg, d in pending:
            already = finished(cfg, d, retry_failed)
            state = run_one(cfg, d, retry_failed=retry_failed, progress=progress_runs)
            if state is None:
                busy.append((cfg, d))
                continue
            res.record(d.name, state, ran=not already)
        if busy and len(busy) == len(pending):
            time.sleep(wait_s)  # every remaining run is held by another live sweep: wait for it
        pending = busy
    return res


def _reset(run_dir: Path) -> None:
    """--force: forget a finished run's results (the directory is kept, its files replaced)."""
    import shutil

    for name in ("status.json", "summary.json", "metrics.jsonl"):
        (run_dir / name).unlink(missing_ok=True)
    for sub in ("ckpt", "probes"):
        shutil.rmtree(run_dir / sub, ignore_errors=True)
    sys.stderr.write(f"bnlab: --force: re-running {run_dir.name}\n")
