"""One analysis module per experiment, found from its spec: experiments/E01_lr_study.yaml is analysed by
bnlab/analyses/e01_lr_study.py (a user's own experiment: `E99_x.yaml` beside `e99_x.py` in a folder given
by `--experiments DIR` or $BNLAB_EXPERIMENTS). An analysis module defines

    quantities(runs: RunSet, spec: Spec) -> dict[str, float]
        our numbers, by the keys the spec's paper block declares (its `values`; its rule refers to them);
        a number that cannot be measured is NaN and the reason goes into `runs.note(...)`.
    FIGURES: dict[str, Callable[[RunSet, Spec], Figure]]
        the experiment's figures in report order; each function's docstring's first line is its caption
        title. A figure with nothing to draw raises UserError (the report says "not drawn").
    fake_runs(root: Path, profile: str) -> str
        writes synthetic run directories of this experiment (bnlab.analyses.fake) and returns the verdict
        the rule must give on them under a comparable profile (the test of the analysis and its rule).

Grid values (learning rates, layers, depths) come from `spec` (see `grid_values`), never from literals.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

from bnlab.analyses.spec import Spec, builtin_dir
from bnlab.config import apply_overrides
from bnlab.errors import UserError

__all__ = ["analysis", "grid_values", "module_name", "probe_options"]
REQUIRED = ("quantities", "FIGURES", "fake_runs")


def module_name(spec: Spec) -> str:
    """The analysis module's file stem: the spec's file stem in lower case (E01_lr_study -> e01_lr_study)."""
    if spec.path is None:
        return f"{spec.id}_{spec.name}".lower()
    return spec.path.stem.lower()


def analysis(spec: Spec) -> ModuleType:
    """The analysis module of `spec`: bnlab.analyses.<stem> for a built-in spec, else <stem>.py beside it."""
    return _load(module_name(spec), spec.path.parent if spec.path is not None else None)


@cache
def _load(stem: str, folder: Path | None) -> ModuleType:
    if folder is None or folder == builtin_dir():
        try:
            mod = importlib.import_module(f"bnlab.analyses.{stem}")
        except ModuleNotFoundError as e:
            if e.name != f"bnlab.analyses.{stem}":
                raise
            raise UserError(f"no analysis module bnlab/analyses/{stem}.py for spec {stem}") from None
    else:
        path = folder / f"{stem}.py"
        if not path.is_file():
            raise UserError(f"experiment {stem}: no analysis module {path} beside its spec")
        name = f"bnlab_user_analyses.{stem}"
        ms = importlib.util.spec_from_file_location(name, path)
        assert ms is not None and ms.loader is not None
        mod = importlib.util.module_from_spec(ms)
        sys.modules[name] = mod
        ms.loader.exec_module(mod)
    missing = [a for a in REQUIRED if not hasattr(mod, a)]
    if missing:
        raise UserError(f"analysis module {mod.__name__} lacks {', '.join(missing)} (see bnlab.analyses)")
    return mod


def grid_values(spec: Spec, key: str, profile: str | None = None) -> list[Any]:
    """The values of grid axis `key` (e.g. "optim.lr") of `spec` under `profile` (the profile's grid
    replaces the base grid's axis); zipped axes ("optim.lr+train.epochs") give the part asked for."""
    grid = dict(spec.grid)
    if profile is not None:
        grid.update(spec.profile(profile).grid)
    if key in grid:
        return list(grid[key])
    for axis, values in grid.items():
        parts = axis.split("+")
        if key in parts:
            i = parts.index(key)
            return [v[i] for v in values]
    raise KeyError(f"{spec.id} has no grid axis {key!r} (axes: {', '.join(grid) or 'none'})")


def probe_options(spec: Spec, name: str, profile: str | None) -> dict[str, Any]:
    """The `options` of probe `name` in the spec's config under `profile` (its `set` may replace `probes`)."""
    raw = apply_overrides(spec.base, spec.profile(profile).set) if profile else spec.base
    for p in raw.get("probes", []) or []:
        if p.get("name") == name:
            return dict(p.get("options") or {})
    raise KeyError(f"{spec.id} runs no probe {name!r} under profile {profile}")
