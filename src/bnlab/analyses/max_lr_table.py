"""The max-lr table of an experiment's `max_lr` runs (E11a, E11b, E12a, E12c, E12d): one row per run with its
log-bisection result (largest stable lr, smallest unstable lr, censored), and the summaries and bar figure
the analyses build on it."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from bnlab.analyses.fake import FakeRoot
from bnlab.analyses.select import NAN
from bnlab.errors import UserError
from bnlab.figures.lr_bars import lr_bar_figure, lr_bars
from bnlab.store.runset import RunSet

BOUNDS = ("max_stable_lr", "min_unstable_lr", "censored")  # summary.json of a max_lr run


def max_lr_table(runs: RunSet, df: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per usable max_lr run of `df` (default: all of `runs`): its columns + max_stable_lr,
    min_unstable_lr, censored (from summary.json)."""
    r = runs.runs if df is None else df
    if "task" in r.columns:
        r = r[r["task"] == "max_lr"]
    out = runs.usable(r).copy()
    for k in BOUNDS:
        col = f"summary.{k}"
        out[k] = out[col] if col in out.columns else np.nan
    out["max_stable_lr"] = pd.to_numeric(out["max_stable_lr"], errors="coerce")
    out["min_unstable_lr"] = pd.to_numeric(out["min_unstable_lr"], errors="coerce")
    out["censored"] = out["censored"].fillna(False).astype(bool)
    return out


def need_max_lr(runs: RunSet) -> pd.DataFrame:
    """The max-lr table; UserError ("not drawn") when there are no max_lr runs."""
    t = max_lr_table(runs)
    if not len(t):
        raise UserError("no max_lr runs")
    return t


def geo_mean_lr(t: pd.DataFrame) -> float:
    """Geometric mean of the finite positive max_stable_lr of `t` (log-bisection results average in log)."""
    v = t["max_stable_lr"].to_numpy(float) if len(t) else np.array([])
    v = v[np.isfinite(v) & (v > 0)]
    return float(np.exp(np.mean(np.log(v)))) if len(v) else NAN


def arm_lr(t: pd.DataFrame) -> float:
    """The max stable lr of one arm: its run's value, or the geometric mean over several runs."""
    if len(t) == 1:
        return float(t["max_stable_lr"].iloc[0])
    return geo_mean_lr(t)


def arm_max_lrs(runs: RunSet, t: pd.DataFrame, arms: Mapping[str, pd.DataFrame]) -> dict[str, float]:
    """The max stable lr (arm_lr) of each arm that has runs, by its quantity key (`arms`: key -> the arm's
    rows of the max-lr table `t`); the censored searches of `t` go into the caption."""
    lrs = {key: arm_lr(g) for key, g in arms.items() if len(g)}
    note_censored(runs, t)
    return lrs


def note_censored(runs: RunSet, t: pd.DataFrame) -> None:
    """Name each arm whose search stopped at its range end (its max stable lr is a one-sided bound)."""
    labels = runs.labels(t, exclude=("task",)) if len(t) else []
    for label, (_, row) in zip(labels, t.iterrows()):
        if row["censored"]:
            runs.note(f"{label}: the search was censored at its range end (one-sided bound)")


def draw_lr_bars(runs: RunSet, ax: Axes, t: pd.DataFrame, labels: list[str]) -> None:
    """bnlab.figures.lr_bars on `ax`, its notes into the caption."""
    for n in lr_bars(ax, t, labels):
        runs.note(n)


def lr_bar_panel(runs: RunSet, title: str) -> Figure:
    """A bar figure of the experiment's max-lr table, one bar per run, named by what tells the runs apart;
    UserError ("not drawn") when there are no max_lr runs."""
    t = need_max_lr(runs)
    labels = list(runs.labels(t, exclude=("task", "train.seed"))) if len(t) else []
    fig, notes = lr_bar_figure(t, labels, title)
    for n in notes:
        runs.note(n)
    return fig


def fake_max_lr_run(root: FakeRoot, exp: str, cfg: dict[str, Any], lr: float, censored: bool = False) -> Path:
    """A synthetic max_lr run of `exp` (for fake_runs): stable up to `lr`, unstable at 2 `lr`."""
    return root.run(
        exp,
        {"task": "max_lr", **cfg},
        summary={
            "max_stable_lr": lr,
            "min_unstable_lr": lr * 2,
            "censored": censored,
            "steps": 6,
            "seeds": [0],
        },
    )
