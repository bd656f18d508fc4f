"""E12c · reviewer: balancing the class biases at init equalizes class assignments; does it also raise the
unnormalized net's largest stable lr?

Reads the train runs' output_bias probe (top-class share at init) and the max_lr runs, per model.norm
(batch | none) and model.init.balanced_output_bias (the spec's grid)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from bnlab.analyses.fake import FakeRoot, probe
from bnlab.analyses.max_lr_table import (
    arm_max_lrs,
    draw_lr_bars,
    fake_max_lr_run,
    geo_mean_lr,
    max_lr_table,
)
from bnlab.analyses.select import NAN, mean, norm_rank, ratio
from bnlab.analyses.spec import Spec
from bnlab.store.runset import RunSet

NORMS = {"batch": "bn", "none": "nobn"}  # model.norm -> key part
BIAS = {False: "default", True: "balanced"}  # model.init.balanced_output_bias -> key part
BALANCED = "model.init.balanced_output_bias"


def by_norm_bias(t: pd.DataFrame) -> pd.DataFrame:
    """Rows ordered by norm (BN first) then default before balanced bias: the same colours in every panel."""
    if not len(t) or "model.norm" not in t.columns:
        return t
    bal = t.get(BALANCED, pd.Series(False, index=t.index)).astype(bool)
    keys = [(norm_rank(n), b) for n, b in zip(t["model.norm"], bal)]
    return t.iloc[sorted(range(len(keys)), key=keys.__getitem__)]


def train_runs(runs: RunSet) -> pd.DataFrame:
    r = runs.usable()
    return r[r["task"] == "train"] if "task" in r.columns else r


def quantities(runs: RunSet, spec: Spec) -> dict[str, float]:
    q = {f"nobn_top_class_share_{b}": NAN for b in BIAS.values()}
    q["nobn_max_lr_balanced_over_default"] = NAN
    q |= {f"max_lr_{k}_{b}_bias": NAN for k in NORMS.values() for b in BIAS.values()}
    tr = train_runs(runs)
    t = runs.probe("output_bias", tr)
    if len(t):
        share = t[t["metric"] == "top_class_share"]
        none = tr[tr["model.norm"] == "none"]
        for bal, b in BIAS.items():
            ids = none[none[BALANCED].astype(bool) == bal]["run_id"]
            q[f"nobn_top_class_share_{b}"] = mean(share[share["run_id"].isin(ids)]["value"])
    lt = max_lr_table(runs)
    if len(lt):
        none = lt[lt["model.norm"] == "none"]
        bal = none[BALANCED].astype(bool)
        q["nobn_max_lr_balanced_over_default"] = ratio(geo_mean_lr(none[bal]), geo_mean_lr(none[~bal]))
        arms = {
            f"max_lr_{k}_{b}_bias": lt[(lt["model.norm"] == norm) & (lt[BALANCED].astype(bool) == flag)]
            for norm, k in NORMS.items()
            for flag, b in BIAS.items()
        }
        q |= arm_max_lrs(runs, lt, arms)
    return q


def bias_fix(runs: RunSet, spec: Spec) -> Figure:
    """E12c: top-class share at init and largest stable lr, with and without the balanced output bias."""
    fig = Figure(figsize=(10.0, 4.0), layout="constrained")
    ax_share, ax_lr = fig.subplots(1, 2)
    tr = by_norm_bias(train_runs(runs))
    t = runs.probe("output_bias", tr) if len(tr) else pd.DataFrame()
    if len(t):
        share = t[t["metric"] == "top_class_share"].groupby("label", sort=False)["value"].mean()
        share.index = [s.replace(", train", "") for s in share.index]
        ax_share.bar(
            np.arange(len(share)), share.to_numpy(float), color=[f"C{i % 8}" for i in range(len(share))]
        )
        ax_share.set_xticks(np.arange(len(share)), list(share.index), rotation=30, ha="right", fontsize=7)
        # uniform share over 10 classes (CIFAR-10), named in a legend rather than over the bars
        ax_share.axhline(0.1, color="0.4", ls="--", lw=0.8, label="uniform share 1/10")
        ax_share.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    else:
        ax_share.text(0.5, 0.5, "no output_bias rows", ha="center", transform=ax_share.transAxes)
    ax_share.set_ylim(0, 1.05)
    ax_share.set_xlabel("variant")
    ax_share.set_ylabel("top-class share at init")
    ax_share.set_title("share of the images predicted as the top class, at init")
    lr_t = by_norm_bias(max_lr_table(runs))
    if len(lr_t):
        draw_lr_bars(runs, ax_lr, lr_t, list(runs.labels(lr_t, exclude=("task",))))
    ax_lr.set_title("largest stable lr")
    return fig


FIGURES = {"bias_fix": bias_fix}


def fake_runs(root: Path, profile: str) -> str:
    """Top-class share 0.9 with the default bias, 0.2 balanced; max stable lr 1e-3 default, 1e-2 balanced
    (both norms): reproduced."""
    r = FakeRoot(root, profile)
    for norm in NORMS:
        for bal in BIAS:
            cfg = {"model.norm": norm, BALANCED: bal}
            d = r.run("E12c", cfg)
            row = {"metric": "top_class_share", "value": 0.2 if bal else 0.9, "norm_stats": norm}
            probe(d, "output_bias", [row])
            fake_max_lr_run(r, "E12c", cfg, 1e-2 if bal else 1e-3)
    return "reproduced"
