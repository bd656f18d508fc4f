"""Run selection and robust summaries shared by the analyses (no plotting, no file reading)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bnlab.errors import UserError
from bnlab.store.runset import RunSet

NAN = float("nan")


def need_runs(runs: RunSet, what: str, df: pd.DataFrame | None = None) -> pd.DataFrame:
    """The usable (complete or diverged) runs; UserError ("not drawn") when there are none."""
    r = runs.usable(df)
    if not len(r):
        raise UserError(f"{what}: no complete or diverged runs")
    return r


def prefer(df: pd.DataFrame, col: str, value: object) -> pd.DataFrame:
    """The rows with `col == value` if there are any (e.g. the paper's Xavier init), else all rows."""
    if col in df.columns and (df[col] == value).any():
        return df[df[col] == value]
    return df


def diverged_note(runs: RunSet, df: pd.DataFrame) -> None:
    for _, row in df[df["state"] == "diverged"].iterrows():
        runs.note(
            f"run {row['run_id']} ({runs.label(row)}) diverged at step {row.get('step')}: "
            f"drawn up to its divergence and marked x"
        )


def pct_of_training(row: pd.Series, m: pd.DataFrame) -> np.ndarray:
    """% of training of each metrics row: step / train.steps, else epoch / train.epochs."""
    steps = row.get("train.steps")
    if steps is not None and not pd.isna(steps) and float(steps) > 0:
        return 100.0 * m["step"].to_numpy(float) / float(steps)
    epochs = float(row.get("train.epochs") or 0)
    if epochs > 0 and "epoch" in m.columns:
        return 100.0 * m["epoch"].to_numpy(float) / epochs
    return 100.0 * m["step"].to_numpy(float) / max(float(m["step"].max()), 1.0)


def norm_rank(norm: object) -> tuple[int, str]:
    """BN first, no norm last, the others between (alphabetically)."""
    return (0 if norm == "batch" else 2 if norm == "none" else 1, str(norm))


def finite_values(s: pd.Series | np.ndarray | list) -> np.ndarray:
    v = pd.to_numeric(pd.Series(s), errors="coerce").to_numpy(float)
    return v[np.isfinite(v)]


def mean(s: pd.Series | np.ndarray | list) -> float:
    v = finite_values(s)
    return float(v.mean()) if len(v) else NAN


def median(s: pd.Series | np.ndarray | list) -> float:
    v = finite_values(s)
    return float(np.median(v)) if len(v) else NAN


def median_where(t: pd.DataFrame, **match: object) -> float:
    """The median of the finite `value`s of the rows of `t` whose columns equal `match` (e.g. norm="batch");
    NaN when there are none."""
    if not len(t):
        return NAN
    keep = pd.Series(True, index=t.index)
    for col, v in match.items():
        keep &= t[col] == v
    return median(t[keep]["value"])


def ratio(a: float, b: float) -> float:
    return a / b if np.isfinite(a) and np.isfinite(b) and b != 0 else NAN
