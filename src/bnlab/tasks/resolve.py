"""A config that resolves here is a config that runs: the schema (`bnlab.config`), the registry names
(`bnlab.training.check_names`) and the typed options of its task kind.

`bnlab.config.validate` / `bnlab.config.resolve` check the schema only (config imports nothing above it);
everything that expands or runs configs (CLI, spec expansion, sweeps) calls `check` or `resolve` here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bnlab import config as config_mod
from bnlab.config import Config
from bnlab.training.names import check_names


def check(cfg: Config) -> Config:
    """`cfg` itself when its registry names and `task_options` are valid; else a one-sentence UserError."""
    from bnlab.tasks import TASKS  # the registry lives in the package's __init__, which imports this module

    check_names(cfg)
    task = TASKS.get(cfg.task)
    if task.options is not None:
        task.options(cfg.task_options, cfg.task)
    return cfg


def resolve(
    config: str | Path | dict[str, Any] | Config | None = None, overrides: list[str] | None = None
) -> Config:
    """YAML path, dict or Config, plus `a.b=value` overrides -> a Config that runs (see `check`)."""
    return check(config_mod.resolve(config, overrides))


__all__ = ["check", "resolve"]
