"""E13 · Santurkar et al. 2018, Fig. 4: with BN the loss varies less along the step and the gradient is more
predictive (smaller, more stable effective β-smoothness).

Reads the gradient_predictiveness rows of the training runs and the max_lr run of the same spec. The arms
are found from the runs, not typed here: BN = the BN training runs with the largest lr; no BN at its max =
the no-BN training runs with the largest lr not above the measured max stable lr (else the smallest no-BN lr,
and the design is not at risk); no BN at BN's lr = the no-BN runs with BN's lr (probed while they survive).
Each arm may hold several seeds: BN and no BN are paired by seed, each seed gives the mean over its paired
probe steps of the log ratios, and the estimate is the mean over seeds with the standard error between seeds
(independent runs); with one seed it is the standard error over that run's steps (not independent)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from bnlab.analyses.fake import FakeRoot, probe
from bnlab.analyses.lr_design import nobn_max, thresholds, training_runs
from bnlab.analyses.max_lr_table import fake_max_lr_run
from bnlab.analyses.select import NAN, need_runs
from bnlab.analyses.spec import Spec
from bnlab.figures.smoothness import smoothness_figure
from bnlab.store.runset import RunSet

PROBE = "gradient_predictiveness"
SUMMARY = ("beta_max", "loss_range", "grad_change_max")
KEYS = (
    "nobn_max_lr",
    "nobn_lr_over_max",
    "bn_lr_over_nobn_max",
    "design_at_risk",
    "paired_steps",
    "seeds_paired",
    "beta_median_bn",
    "beta_median_nobn",
    "log10_beta_ratio",
    "log10_beta_ratio_se",
    "log10_loss_range_ratio",
    "log10_loss_range_ratio_se",
    "log10_grad_change_ratio",
    "beta_log_sd_bn",
    "beta_log_sd_nobn",
    "log10_beta_ratio_same_lr",
    "same_lr_steps",
)


def seeds(df: pd.DataFrame) -> pd.Series:
    """train.seed of each row (0, the default, where the column is absent or empty)."""
    if "train.seed" not in df.columns:
        return pd.Series(0, index=df.index, dtype=int)
    return pd.to_numeric(df["train.seed"], errors="coerce").fillna(0).astype(int)


def by_seed(df: pd.DataFrame) -> dict[int, pd.Series]:
    """One run per seed (the first where a seed repeats), in seed order."""
    sd = seeds(df)
    return {int(k): df.loc[sd[sd == k].index[0]] for k in sorted(set(sd))}


def arms(runs: RunSet) -> dict[str, dict[int, pd.Series]]:
    """bn, nobn (at its measured max), nobn_same_lr (at BN's lr): the usable training runs of each arm
    by seed, where present."""
    r = training_runs(runs, runs.usable())
    lr = pd.to_numeric(r.get("optim.lr"), errors="coerce")
    out: dict[str, dict[int, pd.Series]] = {}
    bn, no = r[r["model.norm"] == "batch"], r[r["model.norm"] == "none"]
    if len(bn):
        out["bn"] = by_seed(bn[np.isclose(lr[bn.index], lr[bn.index].max())])
    if len(no):
        cap = nobn_max(thresholds(runs))
        under = lr[no.index][lr[no.index] <= cap * (1 + 1e-9)] if np.isfinite(cap) else lr.iloc[0:0]
        pick = under.max() if len(under) else lr[no.index].min()
        out["nobn"] = by_seed(no[np.isclose(lr[no.index], pick)])
        if "bn" in out:
            same = no[np.isclose(lr[no.index], arm_lr(out["bn"]))]
            if len(same):
                out["nobn_same_lr"] = by_seed(same)
    return out


def arm_lr(arm: dict[int, pd.Series]) -> float:
    return float(next(iter(arm.values()))["optim.lr"])


def per_step(runs: RunSet, row: pd.Series) -> pd.DataFrame:
    """One row per probe step of one run: beta_max, loss_range, grad_change_max (NaN where not finite)."""
    t = runs.probe(PROBE, row.to_frame().T)
    if not len(t):
        return pd.DataFrame(columns=["step", *SUMMARY])
    t = t[t["metric"].isin(SUMMARY)]
    w = t.pivot_table(index="step", columns="metric", values="value", aggfunc="first")
    return w.reindex(columns=list(SUMMARY)).reset_index()


def log_ratio(a: pd.DataFrame, b: pd.DataFrame, col: str) -> np.ndarray:
    """log10(a / b) of `col`, paired by step, where both are finite and positive."""
    m = a.merge(b, on="step", suffixes=("_a", "_b"))
    x, y = m[f"{col}_a"].to_numpy(float), m[f"{col}_b"].to_numpy(float)
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    return np.log10(x[ok] / y[ok])


def mean_se(v: np.ndarray) -> tuple[float, float]:
    """Mean and standard error (sd / sqrt(n)) of `v` (NaN where undefined)."""
    if len(v) < 2:
        return (float(v.mean()) if len(v) else NAN), NAN
    return float(v.mean()), float(v.std(ddof=1) / np.sqrt(len(v)))


def log_sd(t: pd.DataFrame) -> float:
    v = t["beta_max"].to_numpy(float)
    v = v[np.isfinite(v) & (v > 0)]
    return float(np.log10(v).std(ddof=1)) if len(v) > 1 else NAN


def paired_seeds(a: dict[int, pd.DataFrame], b: dict[int, pd.DataFrame]) -> pd.DataFrame:
    """One row per seed present in both arms (their `per_step` tables by seed): steps (paired probe steps
    with a finite β ratio) and, per quantity in SUMMARY, the mean and the over-steps standard error of
    log10(a / b) over that seed's paired steps."""
    rows = []
    for seed in sorted(set(a) & set(b)):
        ta, tb = a[seed], b[seed]
        row: dict[str, float] = {"seed": seed, "steps": float(len(log_ratio(ta, tb, "beta_max")))}
        for col in SUMMARY:
            row[col], row[f"{col}_se"] = mean_se(log_ratio(ta, tb, col))
        rows.append(row)
    cols = ["seed", "steps", *SUMMARY, *(f"{c}_se" for c in SUMMARY)]
    return pd.DataFrame(rows, columns=cols)


def over_seeds(t: pd.DataFrame, col: str) -> tuple[float, float]:
    """The mean over seeds of the per-seed means of `col`; its standard error is sd over seeds / sqrt(n)
    with >= 2 seeds (independent runs), else that one seed's standard error over its probe steps."""
    ok = t[np.isfinite(t[col].to_numpy(float))]
    if len(ok) >= 2:
        return mean_se(ok[col].to_numpy(float))
    if len(ok) == 1:
        return float(ok[col].iloc[0]), float(ok[f"{col}_se"].iloc[0])
    return NAN, NAN


def stats_note(runs: RunSet, arm: dict[int, pd.Series]) -> None:
    """Name the statistics mode BN's probe rows were measured with (batch: this minibatch's, coupled)."""
    rows = pd.DataFrame(list(arm.values()))
    t = runs.probe(PROBE, rows)
    modes = sorted(set(t["norm_stats"].dropna().astype(str))) if "norm_stats" in t.columns else []
    runs.note(
        f"BN's loss, gradient change and β are measured with {', '.join(modes) or 'unnamed'} statistics"
    )


def quantities(runs: RunSet, spec: Spec) -> dict[str, float]:
    q = dict.fromkeys(KEYS, NAN)
    a = arms(runs)
    cap = nobn_max(thresholds(runs))
    q["nobn_max_lr"] = cap
    if "bn" not in a or "nobn" not in a:
        return q
    stats_note(runs, a["bn"])
    q["nobn_lr_over_max"] = arm_lr(a["nobn"]) / cap
    q["bn_lr_over_nobn_max"] = arm_lr(a["bn"]) / cap
    for key, only in (("BN", set(a["bn"]) - set(a["nobn"])), ("no BN", set(a["nobn"]) - set(a["bn"]))):
        if only:
            runs.note(f"seed(s) {sorted(only)} of {key} have no partner in the other arm: left out")
    tables = {k: {s: per_step(runs, row) for s, row in arm.items()} for k, arm in a.items()}  # read once
    t = paired_seeds(tables["nobn"], tables["bn"])
    short = t[t["steps"] < 3]
    if len(short):
        runs.note(f"seed(s) {short['seed'].tolist()} have fewer than 3 paired probe steps: left out")
    t = t[t["steps"] >= 3]
    q["seeds_paired"] = float(len(t))
    q["paired_steps"] = float(t["steps"].sum())
    q["log10_beta_ratio"], q["log10_beta_ratio_se"] = over_seeds(t, "beta_max")
    q["log10_loss_range_ratio"], q["log10_loss_range_ratio_se"] = over_seeds(t, "loss_range")
    q["log10_grad_change_ratio"] = over_seeds(t, "grad_change_max")[0]
    if len(t) >= 2:
        runs.note(
            f"standard errors between seeds: sd over {len(t)} seeds / sqrt({len(t)}) (independent runs)"
        )
    elif len(t) == 1:
        runs.note("standard errors over the probe steps of one seed (not independent: a lower bound)")
    kept = [int(s) for s in t["seed"]]
    for name in ("bn", "nobn"):
        steps = [tables[name][s] for s in kept]
        v = np.concatenate([x["beta_max"].to_numpy(float) for x in steps]) if steps else np.array([])
        q[f"beta_median_{name}"] = float(np.nanmedian(v)) if np.isfinite(v).any() else NAN
        sds = np.array([log_sd(x) for x in steps])
        q[f"beta_log_sd_{name}"] = float(np.nanmean(sds)) if np.isfinite(sds).any() else NAN
    used = [arm[s] for arm in (a["bn"], a["nobn"]) for s in kept]
    complete = all(row["state"] == "complete" for row in used)
    fair = 1 / 3 - 1e-9 <= q["nobn_lr_over_max"] <= 1 + 1e-9 and q["bn_lr_over_nobn_max"] >= 3
    q["design_at_risk"] = float(bool(kept and complete and fair))
    if "nobn_same_lr" in a:
        same = paired_seeds(tables["nobn_same_lr"], tables["bn"])
        q["same_lr_steps"] = float(same["steps"].sum())
        q["log10_beta_ratio_same_lr"] = over_seeds(same[same["steps"] > 0], "beta_max")[0]
    return q


def bands(runs: RunSet, row: pd.Series, label: str) -> pd.DataFrame:
    """Per probe step: min and max over the step sizes of the loss (with L(θ) itself) and of the gradient
    change; rows label, quantity, step, lo, hi."""
    t = runs.probe(PROBE, row.to_frame().T)
    if not len(t):
        return pd.DataFrame()
    t = t[t["metric"].isin(["loss", "grad_change", "loss0"])].copy()
    t["value"] = pd.to_numeric(t["value"], errors="coerce")
    t = t[np.isfinite(t["value"].to_numpy(float))]
    t["quantity"] = t["metric"].replace({"loss0": "loss"})
    g = t.groupby(["quantity", "step"])["value"].agg(lo="min", hi="max").reset_index()
    return g.assign(label=label)


def smoothness(runs: RunSet, spec: Spec) -> Figure:
    """E13 / Fig. 4: loss band and gradient-change band over the step sizes, and effective β, vs step
    (the lowest seed of each arm; the numbers pair every seed)."""
    need_runs(runs, "smoothness")
    cap = nobn_max(thresholds(runs))
    names = {"bn": "BN", "nobn": f"no BN (measured max {cap:.3g})", "nobn_same_lr": "no BN at BN's lr"}
    band, beta = [], []
    a = arms(runs)
    if "bn" in a:
        stats_note(runs, a["bn"])
    for key, arm in a.items():
        seed, row = next(iter(arm.items()))
        label = f"{names[key]}, lr {float(row['optim.lr']):g}"
        if len(arm) > 1:
            label += f", seed {seed}"
            runs.note(f"{names[key]}: seed {seed} drawn of {len(arm)} seeds {sorted(arm)}")
        if row["state"] == "diverged":
            runs.note(f"{label} diverged at step {row.get('step')}: probed up to then")
        band.append(bands(runs, row, label))
        b = per_step(runs, row)
        nonfinite = int((~np.isfinite(b["beta_max"].to_numpy(float))).sum())
        if nonfinite:
            runs.note(f"{label}: {nonfinite} probe step(s) without a finite β left out")
        b = b[np.isfinite(b["beta_max"].to_numpy(float))]
        beta.append(pd.DataFrame({"label": label, "step": b["step"], "value": b["beta_max"]}))
    cat = [pd.concat(x, ignore_index=True) if x else pd.DataFrame() for x in (band, beta)]
    return smoothness_figure(*cat)


FIGURES = {"smoothness": smoothness}


def write(
    root: Path,
    profile: str,
    beta_nobn: float,
    range_nobn: float,
    nobn_lr: float = 0.01,
    wiggle: float = 0.1,
    seeds: tuple[int, ...] = (0,),
    spread: float = 0.0,
) -> None:
    """One max_lr run (no BN's max 0.01), BN at 0.1 and no BN at `nobn_lr` for each of `seeds`, and no BN
    at 0.1 (seed 0, diverged at step 20), 6 probe steps each (2 for the diverged run). BN's β 10 and loss
    range 0.1 with a ±10 % wiggle over steps; no BN's scaled by the given factors (wiggle ±`wiggle`) and, for
    the j-th of n seeds, by 10**(spread·(j − (n−1)/2)) (seed-to-seed scatter, zero on average)."""
    r = FakeRoot(root, profile)
    fake_max_lr_run(r, "E13", {"model.norm": "none"}, 0.01)
    runs_ = [("none", 0.1, 0, 100.0, 100.0, 0.1, "diverged")]
    for j, seed in enumerate(seeds):
        shift = 10 ** (spread * (j - (len(seeds) - 1) / 2))
        runs_.append(("batch", 0.1, seed, 1.0, 1.0, 0.1, "complete"))
        runs_.append(("none", nobn_lr, seed, beta_nobn * shift, range_nobn * shift, wiggle, "complete"))
    for norm, lr, seed, fb, fr, amp, state in runs_:
        cfg = {"model.norm": norm, "optim.lr": lr, "train.seed": seed}
        d = r.run("E13", cfg, state=state, step=20)
        rows = []
        steps = (0, 10) if state == "diverged" else (0, 10, 20, 40, 60, 80)
        for i, st in enumerate(steps):
            w = 1 + amp * (-1) ** i
            summary = {
                "beta_max": 10 * fb * w,
                "loss_range": 0.1 * fr * w,
                "grad_change_max": fb * w,
                "loss0": 2.0,
            }
            rows += [{"metric": k, "value": v, "step": st, "norm_stats": norm} for k, v in summary.items()]
            for s in (0.5, 1.0, 2.0):
                rows.append({"metric": "loss", "value": 2 + 0.05 * fr * s, "eta": s * lr, "step": st})
                rows.append({"metric": "grad_change", "value": fb * s / 2, "eta": s * lr, "step": st})
        probe(d, PROBE, rows)


def fake_runs(root: Path, profile: str) -> str:
    """No BN at its max lr: β and loss range 10x BN's at every step, 3 seeds within 10^±0.05: reproduced."""
    write(root, profile, beta_nobn=10.0, range_nobn=10.0, seeds=(0, 1, 2), spread=0.05)
    return "reproduced"
