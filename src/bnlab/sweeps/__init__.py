"""Executors: local (default), ray, slurm. All of them call `bnlab.tasks.execute(cfg, run_dir)`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bnlab.errors import UserError


def get_executor(name: str) -> Callable[..., Any]:
    """executor(configs, runs_root, *, retry_failed, force, on_done, tags, address) -> SweepResult"""
    if name == "local":
        from bnlab.sweeps.local import run_local

        def local(configs, root, *, address=None, **kw):
            return run_local(configs, root, **kw)

        return local
    if name == "ray":
        from bnlab.sweeps.ray_executor import run_ray

        return run_ray
    if name == "slurm":
        from bnlab.sweeps.slurm_executor import run_slurm

        return run_slurm
    raise UserError(f"unknown executor {name!r}; choose local, ray or slurm")
