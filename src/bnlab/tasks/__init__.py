"""TASKS: what an executor runs for one run directory, chosen by `cfg.task`.

Every executor (local, ray, slurm) calls `execute(cfg, run_dir)`, which dispatches here, so there are
no orchestration special cases: a task is `run(cfg, run_dir)` plus `done(run_dir)` (is the result there).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bnlab.config import Config
from bnlab.registry import Registry
from bnlab.store import RunDir


@dataclass(frozen=True)
class Task:
    run: Callable[..., Any]
    done: Callable[[Path], bool]


TASKS: Registry[Task] = Registry("task")


def _terminal(run_dir: Path) -> bool:
    return RunDir(run_dir).is_terminal()


def _train(cfg: Config, run_dir: Path, progress: bool = True) -> Any:
    from bnlab.training import run

    return run(cfg, run_dir, progress=progress)


TASKS.register("train", doc="train one configuration")(Task(_train, _terminal))


def _rmt(cfg: Config, run_dir: Path, progress: bool = True) -> Any:
    from bnlab.rmt.task import run_task

    return run_task(cfg, run_dir)


TASKS.register("rmt", doc="random-matrix computations (no training)")(Task(_rmt, _terminal))


def _max_lr(cfg: Config, run_dir: Path, progress: bool = True) -> Any:
    from bnlab.experiments.max_lr_task import run_task

    return run_task(cfg, run_dir, progress=progress)


TASKS.register("max_lr", doc="largest stable lr by bisection over short trainings")(Task(_max_lr, _terminal))


def _diverging(cfg: Config, run_dir: Path, progress: bool = True) -> Any:
    from bnlab.experiments.diverging_task import run_task

    return run_task(cfg, run_dir, progress=progress)


def _diverging_done(run_dir: Path) -> bool:
    return _terminal(run_dir) and (run_dir / "probes" / "diverging_step.jsonl").exists()


TASKS.register("diverging_step", doc="train until divergence, then scan the diverging update")(
    Task(_diverging, _diverging_done)
)


def execute(cfg: Config, run_dir: str | Path, progress: bool = True) -> dict[str, Any]:
    """Run `cfg` in `run_dir` unless its result is already there; returns the run's status."""
    rd = RunDir(run_dir)
    task = TASKS.get(cfg.task)
    if not task.done(rd.path):
        _trace(rd.path.name, "")
        task.run(cfg, rd.path, progress=progress)
        _trace(rd.path.name, ".done")
    return rd.status()


def _trace(name: str, suffix: str) -> None:
    """Test hook: with BNLAB_TRACE_RUNS=FILE, each execution appends the run id to FILE (start) and
    FILE.done (finish), so tests can prove that no finished run is executed again."""
    path = os.environ.get("BNLAB_TRACE_RUNS")
    if path:
        with open(path + suffix, "a") as f:
            f.write(f"{name}:{os.getpid()}\n")


def is_done(cfg: Config, run_dir: str | Path) -> bool:
    return TASKS.get(cfg.task).done(Path(run_dir))
