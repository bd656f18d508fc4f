"""E11b · appendix: a single BN layer at the end of the unnormalized net captures ~2/3 of BN's improvement.

Reads the max_lr and train runs per model.placement (the spec's grid: `all`, the single final norms
`final_*`, `none`); the test accuracies are the train runs' at the spec's lr (optim.lr under the profile).
The share of BN's gain means something only where BN has a gain: the rule counts only where BN everywhere
takes a largest stable lr >= 10x no norm's (`bn_over_nobn_max_lr`, measured in the same runs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from bnlab.analyses import grid_values
from bnlab.analyses.fake import FakeRoot
from bnlab.analyses.max_lr_table import (
    arm_max_lrs,
    draw_lr_bars,
    fake_max_lr_run,
    geo_mean_lr,
    max_lr_table,
)
from bnlab.analyses.select import NAN, mean, ratio
from bnlab.analyses.spec import Spec
from bnlab.store.runset import RunSet

ENDS = ("all", "none")  # BN everywhere and no norm: the gain a single norm is a share of


def placements(runs: RunSet, spec: Spec) -> list[str]:
    """The spec's placements under the runs' profile: BN everywhere, the single final norms, no norm."""
    grid = [str(p) for p in grid_values(spec, "model.placement", runs.profile)]
    return [ENDS[0], *(p for p in grid if p not in ENDS), ENDS[1]]


def by_placement(t: pd.DataFrame, order: list[str]) -> pd.DataFrame:
    """Rows in the order of `order` (unknown placements last)."""
    if not len(t) or "model.placement" not in t.columns:
        return t
    rank = {p: i for i, p in enumerate(order)}
    return t.iloc[np.argsort([rank.get(p, len(rank)) for p in t["model.placement"]], kind="stable")]


def train_runs(runs: RunSet) -> pd.DataFrame:
    r = runs.runs
    return runs.usable(r[r["task"] == "train"]) if "task" in r.columns else pd.DataFrame()


def best_share(x: dict[str, float], finals: list[str]) -> float:
    """max over the single final norms of (x_single - x_none) / (x_all - x_none); NaN where undefined."""
    gain = x["all"] - x["none"]
    shares = [
        (x[p] - x["none"]) / gain for p in finals if np.isfinite(x[p]) and np.isfinite(gain) and gain != 0
    ]
    return float(max(shares)) if shares else NAN


def quantities(runs: RunSet, spec: Spec) -> dict[str, float]:
    order = placements(runs, spec)
    finals = [p for p in order if p not in ENDS]
    q = {
        "best_single_share_of_lr_gain": NAN,
        "bn_over_nobn_max_lr": NAN,
        "best_single_share_of_acc_gain": NAN,
    }
    q |= {f"max_lr_{p}": NAN for p in order} | {f"test_acc_{p}": NAN for p in order}
    t = max_lr_table(runs)
    if len(t):
        lr = {p: geo_mean_lr(t[t["model.placement"] == p]) for p in order}
        log_lr = {p: np.log10(v) if v > 0 else NAN for p, v in lr.items()}
        q["best_single_share_of_lr_gain"] = best_share(log_lr, finals)
        q["bn_over_nobn_max_lr"] = ratio(lr["all"], lr["none"])
        if np.isfinite(log_lr["all"]) and log_lr["all"] == log_lr["none"]:
            runs.note("BN and no norm have the same max stable lr: the share of BN's gain is undefined")
        q |= arm_max_lrs(runs, t, {f"max_lr_{p}": t[t["model.placement"] == p] for p in order})
    tr = train_runs(runs)
    if len(tr):
        done = tr[tr["state"] == "complete"]
        acc = {
            p: mean(done[done["model.placement"] == p].get("summary.test_acc", pd.Series(dtype=float))) * 100
            for p in order
        }
        q["best_single_share_of_acc_gain"] = best_share(acc, finals)
        q |= {f"test_acc_{p}": a for p, a in acc.items()}
    return q


def single_norm(runs: RunSet, spec: Spec) -> Figure:
    """E11b: largest stable lr and test accuracy (at the spec's lr) per norm placement."""
    order = placements(runs, spec)
    fig = Figure(figsize=(10.0, 4.0), layout="constrained")
    ax_lr, ax_acc = fig.subplots(1, 2)
    lr_t = by_placement(max_lr_table(runs), order)
    if len(lr_t):
        draw_lr_bars(runs, ax_lr, lr_t, [runs.label(row, ["model.placement"]) for _, row in lr_t.iterrows()])
        ax_lr.set_xlabel("placement")
    ax_lr.set_title("largest stable lr per placement")
    tr = by_placement(train_runs(runs), order)
    if len(tr):
        acc = pd.to_numeric(tr.get("summary.test_acc"), errors="coerce") * 100
        names = [runs.label(row, ["model.placement"]) for _, row in tr.iterrows()]
        for i, ((_, row), a, name) in enumerate(zip(tr.iterrows(), acc, names)):
            if np.isfinite(a):
                ax_acc.bar(i, a, color=f"C{i % 8}")
                ax_acc.text(i, a, f"{a:.1f}", ha="center", va="bottom", fontsize=7)
            else:
                runs.note(f"run {row['run_id']} ({name}): no finite test accuracy (state {row['state']})")
        ax_acc.set_xticks(np.arange(len(tr)), names, rotation=30, ha="right", fontsize=7)
        ax_acc.set_title(f"test accuracy at lr {tr['optim.lr'].iloc[0]:g}")
        ax_acc.set_xlabel("placement")
    else:
        ax_acc.text(0.5, 0.5, "no training runs", ha="center", transform=ax_acc.transAxes)
    ax_acc.set_ylabel("test accuracy (%)")
    return fig


FIGURES = {"single_norm": single_norm}


def write_fake(
    root: Path,
    profile: str,
    *,
    lrs: tuple[float, float, float, float] = (1.0, 0.1, 0.05, 1e-3),
    accs: tuple[float, float, float, float] = (0.8, 0.7, 0.65, 0.5),
) -> None:
    """Synthetic E11b runs: per placement (all, final_prepool, final_prefc, none) a max_lr run stable up to
    `lrs` and a training run at lr 5e-3 with test accuracy `accs`."""
    r = FakeRoot(root, profile)
    for placement, lr, acc in zip(("all", "final_prepool", "final_prefc", "none"), lrs, accs):
        cfg = {"model.placement": placement, "model.norm": "batch", "model.init.conv": "kaiming_fan_in"}
        fake_max_lr_run(r, "E11b", {**cfg, "model.depth": 20}, lr)
        r.run("E11b", {**cfg, "model.depth": 20, "optim.lr": 5e-3}, summary={"test_acc": acc})


def fake_runs(root: Path, profile: str) -> str:
    """Max stable lr 1 (BN everywhere), 0.1 / 0.05 (one final norm), 1e-3 (none): a 1000x gap, of which the
    best single norm takes 2/3 of the log10 gain; test acc 80 / 70 / 65 / 50 %: reproduced."""
    write_fake(root, profile)
    return "reproduced"
