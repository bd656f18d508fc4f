"""E12c · reviewer: balancing the class biases at init equalizes class assignments; does it also raise the
unnormalized net's largest stable lr?

Reads the train runs' output_bias probe (top-class share at init) and the max_lr runs, per model.norm
(batch | none) and model.init.balanced_output_bias (the spec's grid). The rule counts only where BN's largest
stable lr is >= 10x no BN's (default bias, `bn_over_nobn_max_lr`): otherwise there is no gap for the fix to
close."""

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
    q["bn_over_nobn_max_lr"] = NAN
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
        q["bn_over_nobn_max_lr"] = ratio(geo_mean_lr(arms["max_lr_bn_default_bias"]), geo_mean_lr(none[~bal]))
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


def write_fake(
    root: Path,
    profile: str,
    *,
    bn_lr: float = 1.0,
    nobn_lr: tuple[float, float] = (1e-3, 1e-2),
    nobn_share: tuple[float, float] = (0.9, 0.2),
) -> None:
    """Synthetic E12c runs: max stable lr `bn_lr` for BN (both biases), `nobn_lr` (default, balanced) for no
    BN; top-class share at init `nobn_share` (default, balanced) for no BN, 0.15 for BN."""
    r = FakeRoot(root, profile)
    for norm in NORMS:
        for i, bal in enumerate(BIAS):
            cfg = {"model.norm": norm, BALANCED: bal, "model.depth": 20, "model.init.conv": "kaiming_fan_in"}
            d = r.run("E12c", cfg)
            share = nobn_share[i] if norm == "none" else 0.15
            probe(d, "output_bias", [{"metric": "top_class_share", "value": share, "norm_stats": norm}])
            fake_max_lr_run(r, "E12c", cfg, nobn_lr[i] if norm == "none" else bn_lr)


def fake_runs(root: Path, profile: str) -> str:
    """BN stable to lr 1, no BN to 1e-3 (a 1000x gap); the balanced bias drops no BN's top-class share at init
    from 0.9 to 0.2 and raises its max stable lr 10x: reproduced."""
    write_fake(root, profile)
    return "reproduced"
