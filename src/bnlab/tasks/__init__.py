"""Run kinds: TASKS (what an executor runs for one run directory, chosen by `cfg.task`) and their typed options.

Every executor (local, ray, slurm) calls `execute(cfg, run_dir)`, which dispatches here, so there are no
orchestration special cases: a task is `run(cfg, run_dir)`, `done(run_dir)` (is the result there) and
the options model its `task_options` must fit. `check(cfg)` / `resolve(config, overrides)` refuse a config
whose registry names or task options are wrong before anything runs.
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
from bnlab.tasks.diverging_task import DivergingOptions
from bnlab.tasks.max_lr_task import MaxLrOptions
from bnlab.tasks.options import TaskOptions
from bnlab.tasks.resolve import check, resolve
from bnlab.tasks.rmt_task import RmtOptions

__all__ = ["TASKS", "Task", "TaskOptions", "check", "execute", "is_done", "resolve"]


@dataclass(frozen=True)
class Task:
    run: Callable[..., Any]
    done: Callable[[Path], bool]
    # parses cfg.task_options (raises UserError); None: the task reads no options and ignores any given
    # (train runs of specs that cross `task: [train, max_lr]` carry the max_lr options in their run ids)
    options: Callable[[dict[str, Any], str], TaskOptions] | None = None


TASKS: Registry[Task] = Registry("task")


def _terminal(run_dir: Path) -> bool:
    return RunDir(run_dir).is_terminal()


def _train(cfg: Config, run_dir: Path, progress: bool = True) -> Any:
    from bnlab.training import run

    return run(cfg, run_dir, progress=progress)


def _rmt(cfg: Config, run_dir: Path, progress: bool = True) -> Any:
    from bnlab.tasks.rmt_task import run_task

    return run_task(cfg, run_dir)


def _max_lr(cfg: Config, run_dir: Path, progress: bool = True) -> Any:
    from bnlab.tasks.max_lr_task import run_task

    return run_task(cfg, run_dir, progress=progress)


def _diverging(cfg: Config, run_dir: Path, progress: bool = True) -> Any:
    from bnlab.tasks.diverging_task import run_task

    return run_task(cfg, run_dir, progress=progress)


def _diverging_done(run_dir: Path) -> bool:
    return _terminal(run_dir) and (run_dir / "probes" / "diverging_step.jsonl").exists()


TASKS.register("train", doc="train one configuration")(Task(_train, _terminal))
TASKS.register("rmt", doc="random-matrix computations (no training)")(Task(_rmt, _terminal, RmtOptions.parse))
TASKS.register("max_lr", doc="largest stable lr by bisection over short trainings")(
    Task(_max_lr, _terminal, MaxLrOptions.parse)
)
TASKS.register("diverging_step", doc="train until divergence, then scan the diverging update")(
    Task(_diverging, _diverging_done, DivergingOptions.parse)
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
