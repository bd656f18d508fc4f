"""E13 · Santurkar et al. 2018, Fig. 4: with BN the loss varies less along the step and the gradient is more
predictive (smaller, more stable effective β-smoothness).

Reads the gradient_predictiveness rows of the training runs and the max_lr run of the same spec. The arms
are found from the runs, not typed here: BN = the BN training run with the largest lr; no BN at its max =
the no-BN training run with the largest lr not above the measured max stable lr (else the smallest no-BN lr,
and the design is not at risk); no BN at BN's lr = the no-BN run with BN's lr (probed while it survives)."""

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


def arms(runs: RunSet) -> dict[str, pd.Series]:
    """bn, nobn (at its measured max), nobn_same_lr (at BN's lr): the training-run rows, where present."""
    r = training_runs(runs, runs.usable())
    lr = pd.to_numeric(r.get("optim.lr"), errors="coerce")
    out: dict[str, pd.Series] = {}
    bn, no = r[r["model.norm"] == "batch"], r[r["model.norm"] == "none"]
    if len(bn):
        out["bn"] = bn.loc[lr[bn.index].idxmax()]
    if len(no):
        cap = nobn_max(thresholds(runs))
        under = lr[no.index][lr[no.index] <= cap * (1 + 1e-9)] if np.isfinite(cap) else lr.iloc[0:0]
        out["nobn"] = no.loc[under.idxmax() if len(under) else lr[no.index].idxmin()]
        if "bn" in out:
            same = no[np.isclose(lr[no.index], float(out["bn"]["optim.lr"]))]
            if len(same):
                out["nobn_same_lr"] = same.iloc[0]
    return out


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
    if len(v) < 2:
        return (float(v.mean()) if len(v) else NAN), NAN
    return float(v.mean()), float(v.std(ddof=1) / np.sqrt(len(v)))


def log_sd(t: pd.DataFrame) -> float:
    v = t["beta_max"].to_numpy(float)
    v = v[np.isfinite(v) & (v > 0)]
    return float(np.log10(v).std(ddof=1)) if len(v) > 1 else NAN


def quantities(runs: RunSet, spec: Spec) -> dict[str, float]:
    q = dict.fromkeys(KEYS, NAN)
    a = arms(runs)
    cap = nobn_max(thresholds(runs))
    q["nobn_max_lr"] = cap
    if "bn" not in a or "nobn" not in a:
        return q
    bn, no = per_step(runs, a["bn"]), per_step(runs, a["nobn"])
    q["nobn_lr_over_max"] = float(a["nobn"]["optim.lr"]) / cap
    q["bn_lr_over_nobn_max"] = float(a["bn"]["optim.lr"]) / cap
    beta = log_ratio(no, bn, "beta_max")
    q["paired_steps"] = float(len(beta))
    q["log10_beta_ratio"], q["log10_beta_ratio_se"] = mean_se(beta)
    q["log10_loss_range_ratio"], q["log10_loss_range_ratio_se"] = mean_se(log_ratio(no, bn, "loss_range"))
    q["log10_grad_change_ratio"] = mean_se(log_ratio(no, bn, "grad_change_max"))[0]
    for name, t in (("bn", bn), ("nobn", no)):
        v = t["beta_max"].to_numpy(float)
        q[f"beta_median_{name}"] = float(np.nanmedian(v)) if np.isfinite(v).any() else NAN
        q[f"beta_log_sd_{name}"] = log_sd(t)
    complete = a["bn"]["state"] == "complete" and a["nobn"]["state"] == "complete"
    fair = 1 / 3 - 1e-9 <= q["nobn_lr_over_max"] <= 1 + 1e-9 and q["bn_lr_over_nobn_max"] >= 3
    q["design_at_risk"] = float(bool(complete and fair and len(beta) >= 3))
    if "nobn_same_lr" in a:
        same = log_ratio(per_step(runs, a["nobn_same_lr"]), bn, "beta_max")
        q["same_lr_steps"] = float(len(same))
        q["log10_beta_ratio_same_lr"] = mean_se(same)[0]
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
    """E13 / Fig. 4: loss band and gradient-change band over the step sizes, and effective β, vs step."""
    need_runs(runs, "smoothness")
    cap = nobn_max(thresholds(runs))
    names = {"bn": "BN", "nobn": f"no BN (measured max {cap:.3g})", "nobn_same_lr": "no BN at BN's lr"}
    band, beta = [], []
    for key, row in arms(runs).items():
        label = f"{names[key]}, lr {float(row['optim.lr']):g}"
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
    root: Path, profile: str, beta_nobn: float, range_nobn: float, nobn_lr: float = 0.01, wiggle: float = 0.1
) -> None:
    """One max_lr run (no BN's max 0.01) and three training runs with 6 probe steps each; BN's β 10 and
    loss range 0.1 with a ±10 % wiggle over steps, no BN's scaled by the given factors (wiggle ±`wiggle`)."""
    r = FakeRoot(root, profile)
    fake_max_lr_run(r, "E13", {"model.norm": "none"}, 0.01)
    arms_ = (
        ("batch", 0.1, 1.0, 1.0, 0.1, "complete"),
        ("none", nobn_lr, beta_nobn, range_nobn, wiggle, "complete"),
    )
    for norm, lr, fb, fr, amp, state in (*arms_, ("none", 0.1, 100.0, 100.0, 0.1, "diverged")):
        d = r.run("E13", {"model.norm": norm, "optim.lr": lr}, state=state, step=20)
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
    """No BN at its max lr: β and loss range 10x BN's at every step: reproduced."""
    write(root, profile, beta_nobn=10.0, range_nobn=10.0)
    return "reproduced"
