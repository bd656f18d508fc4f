"""A training experiment's learning rates placed against thresholds measured in the same runs root, and
whether its training runs reached a plateau. Used by E1 (and by any experiment that trains at learning rates
chosen relative to the largest stable lr of the same net)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bnlab.analyses.max_lr_table import geo_mean_lr, max_lr_table
from bnlab.analyses.select import NAN
from bnlab.store.runset import RunSet

PLATEAU_ACC = 0.95  # train_eval accuracy that counts as a plateau by itself
PLATEAU_POINTS = 1.0  # or: less than this change (points) over the window before the first lr drop
WINDOW = 0.2  # that window, as a fraction of training


def thresholds(runs: RunSet) -> dict[str, float]:
    """The largest stable lr per model.norm of the max_lr runs (geometric mean over runs of one norm)."""
    t = max_lr_table(runs)
    if not len(t) or "model.norm" not in t.columns:
        return {}
    for _, row in t[t["censored"]].iterrows():
        runs.note(f"the max-lr search of {runs.label(row)} reached its range end: a lower bound only")
    return {str(norm): geo_mean_lr(g) for norm, g in t.groupby("model.norm")}


def nobn_max(th: dict[str, float]) -> float:
    return th.get("none", NAN)


def training_runs(runs: RunSet, df: pd.DataFrame | None = None) -> pd.DataFrame:
    """The training runs (task train) of `df` (default: all of `runs`), not the max_lr searches."""
    r = runs.runs if df is None else df
    return r[r["task"] == "train"] if "task" in r.columns else r


def lr_roles(runs: RunSet, th: dict[str, float]) -> dict[str, float]:
    """large: BN's largest training lr; shared: the largest lr <= no-BN's measured max at which both norms
    have training runs; small: the smallest training lr below the shared one (NaN where absent)."""
    r = training_runs(runs)
    if not len(r):
        return {"large": NAN, "shared": NAN, "small": NAN}
    lr = pd.to_numeric(r["optim.lr"], errors="coerce")
    bn = sorted(set(lr[r["model.norm"] == "batch"].dropna()))
    both = sorted(set(bn) & set(lr[r["model.norm"] == "none"].dropna()))
    cap = nobn_max(th)
    under = [x for x in both if np.isfinite(cap) and x <= cap * (1 + 1e-9)]
    shared = under[-1] if under else NAN
    lower = [x for x in both if np.isfinite(shared) and x < shared]
    return {"large": bn[-1] if bn else NAN, "shared": shared, "small": lower[0] if lower else NAN}


def plateaued(row: pd.Series, m: pd.DataFrame) -> tuple[bool | None, str]:
    """(reached a plateau?, why): the last train_eval accuracy >= 95 %, or < 1 point change over the 20 % of
    training before the first lr drop (the last 20 % for a constant lr). None: not measurable."""
    if m.empty or "split" not in m.columns:
        return None, "no metrics"
    split = "train_eval" if (m["split"] == "train_eval").any() else "train"
    s = m[m["split"] == split].sort_values("step")
    acc = pd.to_numeric(s["acc"], errors="coerce").to_numpy(float)
    ok = np.isfinite(acc)
    if not ok.any():
        return None, f"no finite {split} accuracy"
    frac = s["epoch"].to_numpy(float) / float(row.get("train.epochs") or s["epoch"].max() or 1.0)
    last = acc[ok][-1]
    if last >= PLATEAU_ACC:
        return True, f"final {split} accuracy {100 * last:.1f} % >= {100 * PLATEAU_ACC:.0f} %"
    ms = row.get("optim.milestones")
    first_drop = 1.0
    if row.get("optim.schedule") == "step":
        drops = [float(x) for x in (ms if isinstance(ms, list) else str(ms or "0.5").strip("[]").split(","))]
        first_drop = min(drops) if drops else 1.0
    inside = ok & (frac <= first_drop + 1e-9) & (frac >= first_drop - WINDOW - 1e-9)
    if inside.sum() < 2:
        return None, f"fewer than two {split} evaluations in the window before the first lr drop"
    change = 100 * abs(acc[inside][-1] - acc[inside][0])
    return change < PLATEAU_POINTS, f"{split} accuracy changed {change:.1f} points before the first lr drop"


def plateau_table(runs: RunSet) -> pd.DataFrame:
    """One row per complete training run: norm, lr, seed, plateau (bool), why; a note per run gives the
    evidence either way (the report lists it under the experiment's figures)."""
    rows = []
    r = training_runs(runs)
    for _, row in r[r["state"] == "complete"].iterrows():
        flag, why = plateaued(row, runs.metrics(row))
        rows.append(
            {
                "run_id": row["run_id"],
                "norm": row.get("model.norm"),
                "lr": float(row.get("optim.lr")),
                "seed": row.get("train.seed"),
                "plateau": bool(flag),
                "why": why,
            }
        )
        seed = f", seed {row['train.seed']}" if "train.seed" in row.index else ""
        state = "reached a plateau" if flag else "did not reach a plateau"
        runs.note(f"run {row['run_id']} ({runs.label(row)}{seed}) {state}: {why}")
    return pd.DataFrame(rows, columns=["run_id", "norm", "lr", "seed", "plateau", "why"])
