"""E15 · De & Smith 2020, Brock, De & Smith 2021: at initialization, with BN the residual stream's variance grows
~linearly with depth and each residual branch is down-weighted ~1/√depth against the skip; without BN the
variance grows exponentially; SkipInit recovers BN's picture without normalization.

Reads the signal_propagation probe. Per run (values averaged over the probe's minibatches), within each stage
(`layer{s}.{i}` blocks; a stage's first block changes the width and resets the stream): the variance
increments ΔV_i = V_i − V_{i−1}; `log2_increment_ratio` = log2(Σ late-half ΔV / Σ early-half ΔV) over stages
(0 for linear growth, ≈ (n/2)·log2 r for exponential growth by r per block); `log2_growth` = the pooled
within-stage least-squares slope of log2 V against the block index (doublings per block); the exponent of
branch_variance / skip_variance against skip_variance (−1: the branch's share falls as 1/stream variance,
i.e. its std ratio as 1/√depth when the variance grows linearly). Mean and standard error over seeds."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from bnlab.analyses.fake import FakeRoot, probe
from bnlab.analyses.probe_rows import block_curves, need_probe, probe_rows, with_block_index
from bnlab.analyses.spec import Spec
from bnlab.store.runset import RunSet

PROBE = "signal_propagation"
ARMS = {"bn": "BN", "nonorm": "no norm", "skipinit": "SkipInit", "fixup": "Fixup"}
BLOCKS = {"pre": "pre-activation", "post": "post-activation"}
STATS = ("log2_increment_ratio", "log2_growth", "branch_ratio_exponent", "variance_growth")


def _flag(runs: pd.DataFrame, col: str) -> pd.Series:
    return runs[col].fillna(False).astype(bool) if col in runs else pd.Series(False, runs.index)


def arm_of(runs: pd.DataFrame) -> pd.Series:
    """bn / nonorm / skipinit / fixup per run (another norm by its name)."""
    norm = runs["model.norm"].astype(str)
    arm = norm.where(norm != "batch", "bn").where(norm != "none", "nonorm")
    arm = arm.where(~_flag(runs, "model.skipinit"), "skipinit")
    return arm.where(~_flag(runs, "model.fixup"), "fixup")


def per_block(runs: RunSet) -> pd.DataFrame:
    """One row per run, block and metric (value averaged over minibatches) with the block's 1-based index,
    its stage (from `layer{s}.{i}`; one stage otherwise), the run's arm and block kind."""
    r = runs.usable()
    t = probe_rows(runs, PROBE, r)
    if t.empty:
        return t
    keys = r.set_index("run_id")
    kind = keys["model.block"].astype(str) if "model.block" in keys else pd.Series("post", keys.index)
    t = t.assign(arm=t["run_id"].map(arm_of(keys)), kind=t["run_id"].map(kind))
    t = with_block_index(t)
    stage = t["layer"].map(lambda n: int(m.group(1)) if (m := re.match(r"layer(\d+)\.", str(n))) else 1)
    t = t.assign(stage=stage)
    cols = ["run_id", "arm", "kind", "layer", "block", "stage", "metric"]
    return t.groupby(cols, as_index=False)["value"].mean()


def run_stats(w: pd.DataFrame) -> dict[str, float]:
    """The growth statistics of one run from its per-block wide table (columns: block, stage, metrics)."""
    early = late = 0.0
    xs, ys = [], []
    for _, s in w.sort_values("block").groupby("stage"):
        v = s["variance"].to_numpy(float)
        d = np.diff(v)
        h = len(d) // 2
        if h:
            early, late = early + d[:h].sum(), late + d[-h:].sum()
        if len(v) > 1 and np.all(v > 0):
            b = s["block"].to_numpy(float)
            xs.append(b - b.mean())
            ys.append(np.log2(v) - np.log2(v).mean())
    x, y = (np.concatenate(xs), np.concatenate(ys)) if xs else (np.array([]), np.array([]))
    out = {
        "log2_increment_ratio": float(np.log2(late / early)) if early > 0 and late > 0 else float("nan"),
        "log2_growth": float((x * y).sum() / (x * x).sum()) if len(x) and (x * x).sum() > 0 else float("nan"),
    }
    ratio, skip = w["branch_skip_ratio"].to_numpy(float), w["skip_variance"].to_numpy(float)
    ok = np.isfinite(ratio) & (ratio > 0) & (skip > 0)
    if ok.sum() >= 3 and np.ptp(np.log(skip[ok])) > 0:
        out["branch_ratio_exponent"] = float(np.polyfit(np.log(skip[ok]), np.log(ratio[ok]), 1)[0])
    else:
        out["branch_ratio_exponent"] = float("nan")
    v = w.sort_values("block")["variance"].to_numpy(float)
    out["variance_growth"] = float(v[-1] / v[0]) if len(v) and v[0] > 0 else float("nan")
    return out


def _mean_se(x: list[float]) -> tuple[float, float]:
    a = np.asarray([v for v in x if np.isfinite(v)], float)
    if len(a) == 0:
        return float("nan"), float("nan")
    return float(a.mean()), float(a.std(ddof=1) / np.sqrt(len(a))) if len(a) > 1 else float("nan")


def quantities(runs: RunSet, spec: Spec) -> dict[str, float]:
    g = per_block(runs)
    per_run: dict[tuple[str, str], list[dict[str, float]]] = {}
    if len(g):
        for (_, arm, kind), s in g.groupby(["run_id", "arm", "kind"]):
            w = s.pivot_table(index=["block", "stage"], columns="metric", values="value").reset_index()
            per_run.setdefault((arm, kind), []).append(run_stats(w))
    q: dict[str, float] = {}
    for arm in ARMS:
        for kind in BLOCKS:
            for stat in STATS:
                m, se = _mean_se([r[stat] for r in per_run.get((arm, kind), [])])
                q[f"{arm}_{kind}_{stat}"], q[f"{arm}_{kind}_{stat}_se"] = m, se
    q["bn_pre_branch_ratio_exponent_plus_one"] = q["bn_pre_branch_ratio_exponent"] + 1
    q["bn_pre_branch_ratio_exponent_plus_one_se"] = q["bn_pre_branch_ratio_exponent_se"]
    q["blocks_per_stage"] = (
        float(g.groupby(["run_id", "stage"])["block"].nunique().min()) if len(g) else float("nan")
    )
    return {k: q[k] for k in spec.paper.labels() if k in q}  # the keys the spec declares


def signal_propagation_plot(runs: RunSet, spec: Spec) -> Figure:
    """E15: Brock et al.'s signal propagation plot, per residual block: average channel squared mean, average
    channel variance of the stream, and branch/skip variance ratio; per arm, pre- and post-activation rows."""
    need_probe(runs, PROBE, "signal_propagation_plot")
    panels = [
        ("sq_mean", "average channel squared mean", "squared mean"),
        ("variance", "average channel variance (stream)", "variance"),
        ("branch_skip_ratio", "residual branch / skip variance", "Var(branch) / Var(skip)"),
    ]
    return block_curves(
        per_block(runs),
        PROBE,
        ["arm", "kind"],
        ("arm", ARMS),
        ("kind", BLOCKS),
        panels,
        suptitle="E15: signal propagation plot at initialization (CIFAR ResNet)",
        xlabel="residual block (from the input)",
        note="mean ± SE over seeds; a stage's first block changes the width (shortcut A: zero channels)",
    )


FIGURES = {"signal_propagation": signal_propagation_plot}


GROWTH = {  # name: (V(l), Var(branch)(l)) of a synthetic stream, l = 1, 2, ... within a stage
    "linear": (lambda lv: 1.0 + lv, lambda lv: 1.0),
    "exp": (lambda lv: 1.8**lv, lambda lv: 0.8 * 1.8 ** (lv - 1)),
    "flat": (lambda lv: 1.0, lambda lv: 0.0),
}


def write_fake(
    root: Path,
    profile: str,
    *,
    bn: str = "linear",
    nonorm: str = "exp",
    skipinit: str = "flat",
    blocks: int = 9,
    seeds: int = 3,
) -> None:
    """Synthetic pre-activation E15 runs, 3 stages of `blocks` blocks, each arm's stream growing as GROWTH[name]
    (1 % noise per block)."""
    rng = np.random.default_rng(0)
    r = FakeRoot(root, profile)
    arms = {
        "batch": ({"model.norm": "batch"}, GROWTH[bn]),
        "none": ({"model.norm": "none"}, GROWTH[nonorm]),
        "skipinit": ({"model.norm": "none", "model.skipinit": True}, GROWTH[skipinit]),
    }
    for cfg, (var, branch) in arms.values():
        for seed in range(seeds):
            d = r.run("E15", {**cfg, "model.block": "pre", "model.depth": 6 * blocks + 2, "train.seed": seed})
            rows = []
            for s in (1, 2, 3):
                for i in range(blocks):
                    v = var(i + 1) * (1 + rng.normal(0, 0.01))
                    b = branch(i + 1)
                    vals = {
                        "sq_mean": 0.1 * v,
                        "variance": v,
                        "branch_variance": b,
                        "skip_variance": v - b,
                        "branch_skip_ratio": b / (v - b),
                    }
                    rows += [
                        {"metric": k, "value": x, "layer": f"layer{s}.{i}", "norm_stats": "batch"}
                        for k, x in vals.items()
                    ]
            probe(d, PROBE, rows)


def fake_runs(root: Path, profile: str) -> str:
    """Three seeds, 3 stages x 9 blocks: BN V = 1 + l (linear), no norm V = 1.8^l, SkipInit V = 1: reproduced."""
    write_fake(root, profile)
    return "reproduced"
