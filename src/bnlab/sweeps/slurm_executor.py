"""The SLURM executor (the `slurm` extra): a submitit job array, one array task per run, each calling
`tasks.execute(cfg, run_dir)` under the run's lock. Finished runs are not submitted.

Cluster settings come from the environment: BNLAB_SLURM_PARTITION, BNLAB_SLURM_TIME_MIN (default 1440),
BNLAB_SLURM_GPUS (default 1), BNLAB_SLURM_CPUS (default 4), BNLAB_SLURM_PARALLEL (array parallelism,
default 16). Tests use submitit's local mode (`cluster="local"`), which runs the same pickled jobs as
subprocesses.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from typing_extensions import Unpack  # typing.Unpack from Python 3.11

from bnlab.config import Config
from bnlab.errors import UserError
from bnlab.sweeps.local import SweepOptions, SweepResult, start_sweep


def _job(cfg_json: dict[str, Any], run_dir: str, retry_failed: bool) -> str:
    from bnlab.sweeps.ray_executor import _remote_run

    return _remote_run(cfg_json, run_dir, retry_failed)


def run_slurm(
    configs: list[Config],
    runs_root: str | Path,
    *,
    address: str | None = None,  # unused: a SLURM cluster is reached through submitit
    cluster: str | None = None,
    **sweep: Unpack[SweepOptions],
) -> SweepResult:
    try:
        import submitit
    except ImportError:
        raise UserError("the slurm executor needs the slurm extra: pip install 'bnlab[slurm]'") from None

    res, todo = start_sweep(configs, runs_root, sweep)
    if not todo:
        return res
    executor = submitit.AutoExecutor(
        folder=str(Path(runs_root).resolve() / ".submitit"),
        cluster=cluster or os.environ.get("BNLAB_SLURM_CLUSTER"),
    )
    params: dict[str, Any] = {"timeout_min": int(os.environ.get("BNLAB_SLURM_TIME_MIN", "1440"))}
    if executor.cluster == "slurm":
        params.update(
            slurm_partition=os.environ.get("BNLAB_SLURM_PARTITION"),
            gpus_per_node=int(os.environ.get("BNLAB_SLURM_GPUS", "1")),
            cpus_per_task=int(os.environ.get("BNLAB_SLURM_CPUS", "4")),
            slurm_array_parallelism=int(os.environ.get("BNLAB_SLURM_PARALLEL", "16")),
        )
    executor.update_parameters(**{k: v for k, v in params.items() if v is not None})
    jobs = executor.map_array(
        _job,
        [c.model_dump(mode="json") for c, _ in todo],
        [str(d) for _, d in todo],
        [sweep.get("retry_failed", False)] * len(todo),
    )
    for job, (_, d) in zip(jobs, todo):
        res.record_executed(d, job.result, "slurm job failed")
    return res
