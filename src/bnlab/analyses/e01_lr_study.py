"""E1 · Fig. 1: the learning rate, not BN itself, buys accuracy.

The lr grid is the spec's: `largest` and `smallest` are its ends under the profile, `middle` the grid lr
nearest their geometric mean (0.003 in the paper's 0.1 / 0.003 / 0.0001)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from bnlab.analyses import grid_values
from bnlab.analyses.fake import FakeRoot, metrics
from bnlab.analyses.select import NAN, diverged_note, mean, need_runs, pct_of_training
from bnlab.analyses.spec import Spec
from bnlab.figures.basic import mean_std_curve
from bnlab.store.runset import RunSet


def lr_grid(runs: RunSet, spec: Spec) -> tuple[float, float, float]:
    """(largest, middle, smallest) lr of the spec's grid under the runs' profile."""
    lrs = sorted({float(v) for v in grid_values(spec, "optim.lr", runs.profile)})
    hi, lo = lrs[-1], lrs[0]
    mid = min(lrs, key=lambda lr: abs(np.log(lr) - 0.5 * (np.log(hi) + np.log(lo))))
    return hi, mid, lo


def quantities(runs: RunSet, spec: Spec) -> dict[str, float]:
    r = runs.usable()
    hi, mid, lo = lr_grid(runs, spec)
    acc: dict[tuple[str, float], float] = {}
    for norm, name in (("batch", "BN"), ("none", "no BN")):
        for lr in (hi, mid, lo):
            g = runs.where(model__norm=norm, optim__lr=lr)
            g = g[g["run_id"].isin(r["run_id"])]
            done = g[g["state"] == "complete"]
            acc[(norm, lr)] = mean(done.get("summary.test_acc", pd.Series(dtype=float))) * 100
            if len(g) and not len(done):
                runs.note(f"{name}, lr {lr:g}: no complete run ({', '.join(g['state'].astype(str))})")
    big = r[(r.get("model.norm") == "none") & (pd.to_numeric(r.get("optim.lr"), errors="coerce") > lo)]
    bn_hi = runs.where(model__norm="batch", optim__lr=hi)
    bn_hi = bn_hi[bn_hi["state"] == "complete"]
    return {
        "test_acc_bn_largest_lr": acc[("batch", hi)],
        "test_acc_bn_middle_lr": acc[("batch", mid)],
        "test_acc_bn_smallest_lr": acc[("batch", lo)],
        "test_acc_nobn_smallest_lr": acc[("none", lo)],
        "bn_minus_nobn_at_smallest_lr": acc[("batch", lo)] - acc[("none", lo)],
        "bn_largest_minus_smallest_lr": acc[("batch", hi)] - acc[("batch", lo)],
        "nobn_diverged_share_above_smallest_lr": float((big["state"] == "diverged").mean())
        if len(big)
        else NAN,
        "train_acc_bn_largest_lr": mean(bn_hi.get("summary.train_acc", pd.Series(dtype=float))) * 100,
    }


def lr_curves(runs: RunSet, spec: Spec) -> Figure:
    """E1 / Fig. 1: train and test accuracy vs % of training, mean ± std over seeds per (norm, lr)."""
    r = need_runs(runs, "lr_curves")
    diverged_note(runs, r)
    labels = runs.labels(r, exclude=("train.seed",))
    fig = Figure(figsize=(10.0, 3.8), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    panels = (("train accuracy", ("train_eval", "train")), ("test accuracy", ("test", "val")))
    for ax, (title, splits) in zip(axes, panels):
        used_split = None
        for color, label in enumerate(dict.fromkeys(labels)):
            curves, diverged_x = [], []
            for _, row in r[labels.to_numpy() == label].iterrows():
                m = runs.metrics(row)
                if m.empty or "split" not in m.columns:
                    runs.note(f"run {row['run_id']} ({label}): no metrics, left out")
                    continue
                split = next((s for s in splits if (m["split"] == s).any()), None)
                if split is None:
                    runs.note(f"run {row['run_id']} ({label}): no {'/'.join(splits)} accuracy rows")
                    continue
                used_split = used_split or split
                ms = m[m["split"] == split].sort_values("step")
                x = pct_of_training(row, ms)
                y = pd.to_numeric(ms["acc"], errors="coerce").to_numpy(float) * 100
                ok = np.isfinite(y)
                if (~ok).any():
                    runs.note(
                        f"run {row['run_id']} ({label}): {int((~ok).sum())} non-finite {split} accuracies left out"
                    )
                if ok.sum() == 0:
                    continue
                curves.append((x[ok], y[ok]))
                if row["state"] == "diverged":
                    diverged_x.append((x[ok][-1], y[ok][-1]))
            if not curves:
                continue
            gx, gm, gs = mean_std_curve(curves)
            c, n = f"C{color % 8}", len(curves)
            ax.plot(gx, gm, color=c, label=f"{label} (n={n})")
            if n > 1:
                ax.fill_between(gx, gm - gs, gm + gs, color=c, alpha=0.2, lw=0)
            for dx, dy in diverged_x:
                ax.plot([dx], [dy], "x", color=c, ms=8, mew=2)
        ax.set_title(f"{title} ({used_split or 'none'})")
        ax.set_xlabel("% of training")
        ax.set_xlim(0, 100)
    axes[0].set_ylabel("accuracy (%)")
    axes[0].legend(loc="lower right")
    return fig


def lr_final_table(runs: RunSet, spec: Spec) -> Figure:
    """E1: final test accuracy per (norm, lr), mean ± std over seeds; diverged runs hatched, not averaged."""
    r = need_runs(runs, "lr_final_table")
    labels = runs.labels(r, exclude=("train.seed",))
    rows = []
    for label in dict.fromkeys(labels):
        g = r[labels.to_numpy() == label]
        ok = g[g["state"] == "complete"]
        acc = pd.to_numeric(ok.get("summary.test_acc", pd.Series(dtype=float)), errors="coerce") * 100
        finite = acc[np.isfinite(acc)]
        if len(finite) < len(ok):
            runs.note(
                f"{label}: {len(ok) - len(finite)} complete runs without a finite test accuracy left out"
            )
        std = finite.std(ddof=0) if len(finite) > 1 else 0.0
        rows.append(
            (
                label,
                finite.mean() if len(finite) else np.nan,
                std,
                len(finite),
                int((g["state"] == "diverged").sum()),
            )
        )
    fig = Figure(figsize=(max(5.0, 1.1 * len(rows) + 2), 4.0), layout="constrained")
    ax = fig.subplots()
    for i, (label, avg, std, n, ndiv) in enumerate(rows):
        if n:
            ax.bar(i, avg, yerr=std if n > 1 else None, color=f"C{i % 8}", capsize=3)
            ax.text(i, avg + 1, f"{avg:.1f}%\n(n={n})", ha="center", va="bottom", fontsize=7)
        if ndiv:
            ax.bar(i, 5, color="none", edgecolor="0.3", hatch="xx")
            ax.text(i, 6, f"{ndiv} diverged", ha="center", va="bottom", fontsize=7, color="0.3")
            runs.note(f"{label}: {ndiv} diverged run(s) shown hatched, not averaged")
    ax.set_xticks(np.arange(len(rows)), [row[0] for row in rows], rotation=30, ha="right")
    ax.set_ylabel("final test accuracy (%)")
    ax.set_ylim(0, 110)
    ax.set_title("final test accuracy (mean ± std over seeds)")
    return fig


FIGURES = {"lr_curves": lr_curves, "lr_final_table": lr_final_table}


def fake_runs(root: Path, profile: str) -> str:
    """BN at 0.1 / 0.003 / 1e-4 and no BN at 1e-4 (2 seeds each), no BN diverged at 0.1: reproduced."""
    r = FakeRoot(root, profile)
    for norm, lr, acc in (
        ("batch", 0.1, 0.93),
        ("batch", 0.003, 0.90),
        ("batch", 0.0001, 0.81),
        ("none", 0.0001, 0.82),
    ):
        for seed in (0, 1):
            d = r.run(
                "E1",
                {"model.norm": norm, "optim.lr": lr, "train.seed": seed},
                step=40,
                summary={"test_acc": acc + 0.005 * seed, "train_acc": 1.0},
            )
            metrics(d, list(np.linspace(0.1, acc, 4)))
    d = r.run(
        "E1", {"model.norm": "none", "optim.lr": 0.1}, state="diverged", step=3, reason="loss 1e4 > 1e3"
    )
    metrics(d, [0.1, 0.1], diverge=True)
    return "reproduced"
