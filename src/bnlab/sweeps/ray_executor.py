"""The Ray executor (the `ray` extra): one Ray task per run, each calling `tasks.execute(cfg, run_dir)`.

- `address=None` starts a local instance with a small object store; `address="auto"` joins a running
  cluster. Ray's temp dir is a short `bnlab-ray-<8 hex>` folder in the system temp dir, because Unix
  socket paths are limited to 107 bytes.
- Resources per task from `cfg.task_options.get("num_gpus"/"num_cpus")`, else 1 GPU when the run is on
  CUDA, else 1 CPU.
- A task whose worker died is retried (`max_retries`, bounded); a run that keeps failing is marked
  failed with its error, and the sweep goes on.
- Workers share the runs root (a shared filesystem on a cluster); the per-run lock keeps two sweeps from
  running one run at once, and a finished run is never re-executed.
"""

from __future__ import annotations

import os
import secrets
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

from typing_extensions import Unpack  # typing.Unpack from Python 3.11

from bnlab.config import Config
from bnlab.errors import UserError
from bnlab.sweeps.local import SweepOptions, SweepResult, run_one, start_sweep

MAX_RETRIES = 2  # re-executions of a task whose worker process died


def _remote_run(cfg_json: dict[str, Any], run_dir: str, retry_failed: bool) -> str:
    """Executed inside a Ray worker: validate the config, run it under its lock, return its state."""
    from bnlab.config import validate
    from bnlab.sweeps.local import run_one as _run_one

    cfg = validate(cfg_json)
    for _ in range(3600):  # another sweep holds the lock: wait for it (up to an hour)
        state = _run_one(cfg, Path(run_dir), retry_failed=retry_failed, progress=False)
        if state is not None:
            return state
        time.sleep(1.0)
    return "failed"


def short_temp_dir() -> str:
    path = Path(tempfile.gettempdir()) / f"bnlab-ray-{secrets.token_hex(4)}"
    path.mkdir(parents=True, exist_ok=True)
    return str(path)


def run_ray(
    configs: list[Config],
    runs_root: str | Path,
    *,
    address: str | None = None,
    max_retries: int = MAX_RETRIES,
    **sweep: Unpack[SweepOptions],
) -> SweepResult:
    try:
        import ray
    except ImportError:
        raise UserError("the ray executor needs the ray extra: pip install 'bnlab[ray]'") from None

    res, todo = start_sweep(configs, runs_root, sweep)
    retry_failed = sweep.get("retry_failed", False)
    started_here = False
    if not ray.is_initialized():
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(
                num_cpus=os.cpu_count() or 1,
                object_store_memory=80 * 1024 * 1024,
                _temp_dir=short_temp_dir(),
                include_dashboard=False,
                log_to_driver=False,
            )
        started_here = True
    try:
        remote = ray.remote(max_retries=max_retries, retry_exceptions=False)(_remote_run)
        pending: dict[Any, Path] = {}
        for cfg, d in todo:
            opts = cfg.task_options
            on_gpu = cfg.train.device.startswith("cuda") or (
                cfg.train.device == "auto" and _cluster_has_gpus(ray)
            )
            num_gpus = float(opts.get("num_gpus", 1 if on_gpu else 0))
            num_cpus = float(opts.get("num_cpus", 1))
            ref = remote.options(num_gpus=num_gpus, num_cpus=num_cpus).remote(
                cfg.model_dump(mode="json"), str(d), retry_failed
            )
            pending[ref] = d
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            ref = ready[0]
            # the task raised, or its worker died more than max_retries times
            res.record_executed(
                pending.pop(ref), partial(ray.get, ref), f"ray task failed after {max_retries} retries"
            )
    finally:
        if started_here:
            ray.shutdown()
    return res


def _cluster_has_gpus(ray: Any) -> bool:
    try:
        return float(ray.cluster_resources().get("GPU", 0)) > 0
    except Exception:  # noqa: BLE001
        return False


__all__ = ["run_ray", "short_temp_dir", "run_one"]
