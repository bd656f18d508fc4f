"""E12b · reviewers: can an unnormalized net recover BN's generalization with small batches (the same SGD
noise scale α/((1−m)|B|))?

Everything is measured in the experiment's own runs under one profile: the max_lr arms give BN's largest stable
lr (|B| 128) and no BN's at every |B| it trains with (a smaller batch is less stable: no BN's max at |B| 128
diverges at |B| 8); no BN trains at 0.45-1.2x its own |B|'s max, BN at a large lr no BN can take (|B| 128),
every training run with the same epochs on the same images. Each run's noise scale comes from its own config
(optim.lr, optim.momentum, optim.batch_size). The rule counts only where BN's max is >= 10x no BN's at BN's |B|
(`bn_over_nobn_max_lr`), every no-BN run sits at its own |B|'s max and none diverged (a diverged small batch
would leave the "smallest batch" to a larger one), the budgets match and BN beats no BN at the largest |B|
(there is a gap to close)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from bnlab.analyses.fake import FakeRoot
from bnlab.analyses.lr_design import thresholds, training_runs
from bnlab.analyses.max_lr_table import fake_max_lr_run, geo_mean_lr, max_lr_table
from bnlab.analyses.select import NAN, diverged_note, need_runs, ratio
from bnlab.analyses.spec import Spec
from bnlab.store.runset import RunSet

KEYS = (
    "gap_closed_by_smallest_batch",
    "bn_over_nobn_max_lr",
    "nobn_max_lr",
    "bn_max_lr",
    "nobn_lr_over_own_max_low",
    "nobn_lr_over_own_max_high",
    "nobn_diverged_share",
    "same_budget",
    "matching_batch_size",
    "bn_test_acc",
    "bn_noise_scale",
    "bn_minus_nobn_largest_batch",
    "test_acc_smallest_batch",
    "test_acc_largest_batch",
    "noise_scale_smallest_batch",
    "noise_scale_largest_batch",
)
BUDGET = ("train.epochs", "train.steps", "data.subset", "data.name")  # equal in every training run


def noise_scale(lr: float, momentum: float, batch_size: float) -> float:
    """Smith & Le's SGD noise scale α / ((1 − m)|B|)."""
    return lr / ((1.0 - momentum) * batch_size)


def run_noise_scale(row: pd.Series) -> float:
    """The noise scale of one run, from its config."""
    return noise_scale(float(row["optim.lr"]), float(row["optim.momentum"]), float(row["optim.batch_size"]))


def matching_batch_size(spec: Spec, profile: str | None) -> float:
    """|B| at which no BN's training lr and momentum have the noise scale of BN's training config (its largest
    lr) under `profile`: α |B_bn| / α_bn · (1 − m_bn) / (1 − m) (the paper's 1e-4 · 128 / 0.1 ≈ 0.13)."""
    cfgs = [c for c in spec.configs(profile or "paper") if c.task == "train"]
    bn = [c.optim for c in cfgs if c.model.norm == "batch"]
    nobn = [c.optim for c in cfgs if c.model.norm == "none"]
    if not bn or not nobn:
        return NAN
    ref, own = max(bn, key=lambda o: o.lr), max(nobn, key=lambda o: o.lr)
    return own.lr * ref.batch_size / ref.lr * ((1.0 - ref.momentum) / (1.0 - own.momentum))


def nobn_max_by_batch(runs: RunSet) -> dict[int, float]:
    """No BN's largest stable lr per batch size, from its max_lr arms (geometric mean over runs of one |B|)."""
    t = max_lr_table(runs)
    if not len(t) or "model.norm" not in t.columns:
        return {}
    t = t[t["model.norm"] == "none"]
    sizes = pd.to_numeric(t["optim.batch_size"], errors="coerce")
    return {int(b): geo_mean_lr(g) for b, g in t.groupby(sizes) if np.isfinite(b)}


def _accs(df: pd.DataFrame) -> pd.Series:
    """Test accuracy (%) of the complete runs of `df`."""
    done = df[df["state"] == "complete"]
    return pd.to_numeric(done.get("summary.test_acc", pd.Series(dtype=float)), errors="coerce").dropna() * 100


def same_budget(tr: pd.DataFrame) -> float:
    """1 if every training run has the same epochs / steps / images, 0 if not, NaN without training runs."""
    if not len(tr):
        return NAN
    cols = [c for c in BUDGET if c in tr.columns]
    return float(all(tr[c].astype(str).nunique(dropna=False) <= 1 for c in cols))


def quantities(runs: RunSet, spec: Spec) -> dict[str, float]:
    q = dict.fromkeys(KEYS, NAN)
    th, by_batch = thresholds(runs), nobn_max_by_batch(runs)
    bn_arms = max_lr_table(runs)
    bn_arms = bn_arms[bn_arms["model.norm"] == "batch"] if len(bn_arms) else bn_arms
    bn_batch = int(pd.to_numeric(bn_arms["optim.batch_size"]).max()) if len(bn_arms) else None
    q["nobn_max_lr"], q["bn_max_lr"] = by_batch.get(bn_batch, NAN), th.get("batch", NAN)
    q["bn_over_nobn_max_lr"] = ratio(q["bn_max_lr"], q["nobn_max_lr"])
    q["matching_batch_size"] = matching_batch_size(spec, runs.profile)
    tr = training_runs(runs, runs.usable())
    if not len(tr):
        return q
    q["same_budget"] = same_budget(tr)
    nobn, bn = tr[tr["model.norm"] == "none"], tr[tr["model.norm"] == "batch"]
    if len(nobn):
        own = [
            ratio(float(lr), by_batch.get(int(b), NAN))
            for lr, b in zip(nobn["optim.lr"], nobn["optim.batch_size"])
        ]
        if all(np.isfinite(own)):  # a run without a max_lr arm at its |B| leaves both NaN (inconclusive)
            q["nobn_lr_over_own_max_low"], q["nobn_lr_over_own_max_high"] = float(min(own)), float(max(own))
        for b in sorted({int(b) for b in nobn["optim.batch_size"]} - set(by_batch)):
            runs.note(
                f"no max_lr arm without BN at |B| {b}: its training lr cannot be placed against its max"
            )
        q["nobn_diverged_share"] = float((nobn["state"] == "diverged").mean())
    bn_acc = _accs(bn)
    if len(bn_acc):
        q["bn_test_acc"] = float(bn_acc.mean())
        q["bn_noise_scale"] = run_noise_scale(bn.iloc[0])
    else:
        runs.note("no complete BN training run: BN's point and the gap are not measured")
    done = nobn[nobn["state"] == "complete"]
    diverged_note(runs, nobn)
    if not len(done):
        return q
    acc = pd.to_numeric(done.get("summary.test_acc"), errors="coerce") * 100
    bs = done["optim.batch_size"].astype(int)
    scales = done.apply(run_noise_scale, axis=1)
    runs.note(
        "no BN, test accuracy (noise scale) per |B|: "
        + ", ".join(f"|B| {b}: {a:.1f}% ({s:.3g})" for b, a, s in sorted(zip(bs, acc, scales)))
    )
    smallest, largest = bs == bs.min(), bs == bs.max()
    small, large = float(acc[smallest].mean()), float(acc[largest].mean())
    q["test_acc_smallest_batch"], q["test_acc_largest_batch"] = small, large
    q["noise_scale_smallest_batch"] = float(scales[smallest].mean())
    q["noise_scale_largest_batch"] = float(scales[largest].mean())
    q["bn_minus_nobn_largest_batch"] = q["bn_test_acc"] - large
    q["gap_closed_by_smallest_batch"] = ratio(small - large, q["bn_test_acc"] - large)
    return q


def small_batch(runs: RunSet, spec: Spec) -> Figure:
    """E12b: test accuracy of the unnormalized net vs the noise scale α/((1−m)|B|); BN's point (same budget)."""
    r = need_runs(runs, "small_batch", training_runs(runs, runs.usable()))
    fig = Figure(figsize=(5.5, 4.0), layout="constrained")
    ax = fig.subplots()
    diverged_note(runs, r)
    for norm, colour, marker in (("none", "C0", "o-"), ("batch", "C1", "s")):
        ok = r[(r["model.norm"] == norm) & (r["state"] == "complete")]
        if not len(ok):
            runs.note(f"no complete training run with norm {norm}")
            continue
        x = ok.apply(run_noise_scale, axis=1).to_numpy(float)
        y = pd.to_numeric(ok.get("summary.test_acc"), errors="coerce").to_numpy(float) * 100
        good = np.isfinite(x) & np.isfinite(y)
        if (~good).any():
            runs.note(f"{int((~good).sum())} runs without a finite test accuracy left out")
        order = np.argsort(x[good])
        ax.plot(
            x[good][order], y[good][order], marker, color=colour, label=runs.label(ok.iloc[0], ["model.norm"])
        )
        for xi, yi, b, lr in zip(
            x[good], y[good], ok["optim.batch_size"].to_numpy()[good], ok["optim.lr"].to_numpy()[good]
        ):
            ax.annotate(
                f"|B| {b}, lr {float(lr):.3g}",
                (xi, yi),
                fontsize=7,
                xytext=(3, 3),
                textcoords="offset points",
            )
        if norm == "batch" and good.any():
            ax.axvline(float(x[good][0]), color=colour, ls=":", lw=1)
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("noise scale α / ((1 − m)|B|)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("test accuracy vs SGD noise scale (same epochs)")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    return fig


FIGURES = {"small_batch": small_batch}


def write_fake(
    root: Path,
    profile: str,
    *,
    nobn_maxes: tuple[float, float, float] = (0.004, 0.006, 0.01),
    bn_max: float = 8.0,
    nobn_lr_scale: float = 0.5,
    bn_acc: float = 0.60,
    nobn_accs: tuple[float, float, float] = (0.55, 0.52, 0.50),
    bn_epochs: float = 30.0,
    diverged: int | None = None,
) -> None:
    """Synthetic E12b runs: max_lr arms (BN `bn_max` at |B| 128; no BN `nobn_maxes` at |B| 8 / 32 / 128), BN at
    lr 0.1 |B| 128 (`bn_acc`, `bn_epochs` epochs), no BN at `nobn_lr_scale` x its own |B|'s max with |B| 8 / 32
    / 128 (`nobn_accs`, 30 epochs; the |B| `diverged` run diverges) and a failed |B| 2 run (listed, not
    dropped)."""
    r = FakeRoot(root, profile)
    base = {"model.depth": 20, "model.init.conv": "kaiming_fan_in", "data.subset": 2000}
    fake_max_lr_run(
        r, "E12b", {**base, "model.norm": "batch", "optim.lr": 0.1, "optim.batch_size": 128}, bn_max
    )
    for bs, top in zip((8, 32, 128), nobn_maxes):
        fake_max_lr_run(
            r, "E12b", {**base, "model.norm": "none", "optim.lr": 0.01, "optim.batch_size": bs}, top
        )
    r.run(
        "E12b",
        {**base, "model.norm": "batch", "optim.lr": 0.1, "optim.batch_size": 128, "train.epochs": bn_epochs},
        summary={"test_acc": bn_acc},
    )
    for bs, acc, top in zip((8, 32, 128), nobn_accs, nobn_maxes):
        cfg = {
            **base,
            "model.norm": "none",
            "optim.lr": nobn_lr_scale * top,
            "optim.batch_size": bs,
            "train.epochs": 30.0,
        }
        if bs == diverged:
            r.run("E12b", cfg, state="diverged", step=3, reason="loss 1e15 > 1000 x first loss 15")
        else:
            r.run("E12b", cfg, summary={"test_acc": acc})
    r.run(
        "E12b",
        {**base, "model.norm": "none", "optim.lr": 0.002, "optim.batch_size": 2, "train.epochs": 30.0},
        state="failed",
        step=1,
        reason="RuntimeError: out of memory",
    )


def fake_runs(root: Path, profile: str) -> str:
    """Gap 800x; no BN at half its own |B|'s max reaches 50 % at |B| 128 and 55 % at |B| 8, BN 60 % (same 30
    epochs): the smallest batch closes half the gap: reproduced."""
    write_fake(root, profile)
    return "reproduced"
