"""E11a · appendix: shallower unnormalized ResNets tolerate larger learning rates; with BN the largest stable lr
stays large at every depth.

Reads the max_lr runs (model.norm batch | none, model.depth from the spec's grid); `shallowest` and `deepest`
are the ends of the depths the runs cover (per norm for the no-BN ratio), as the spec's grid under the
profile sets them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator

from bnlab.analyses.fake import FakeRoot
from bnlab.analyses.max_lr_table import (
    arm_lr,
    fake_max_lr_run,
    geo_mean_lr,
    max_lr_table,
    need_max_lr,
    note_censored,
)
from bnlab.analyses.select import NAN, ratio
from bnlab.analyses.spec import Spec
from bnlab.store.runset import NORM_NAMES, RunSet

NORMS = {"batch": "bn", "none": "nobn"}  # model.norm -> key part


def quantities(runs: RunSet, spec: Spec) -> dict[str, float]:
    t = max_lr_table(runs)
    q = {"nobn_max_lr_shallowest_over_deepest": NAN, "bn_over_nobn_max_lr_deepest": NAN}
    q |= {f"max_lr_{k}_{end}": NAN for k in NORMS.values() for end in ("shallowest", "deepest")}
    if not len(t):
        return q
    none = t[t["model.norm"] == "none"]
    if len(none):
        depths = sorted(none["model.depth"].unique())
        q["nobn_max_lr_shallowest_over_deepest"] = ratio(
            geo_mean_lr(none[none["model.depth"] == depths[0]]),
            geo_mean_lr(none[none["model.depth"] == depths[-1]]),
        )
        deep = t[t["model.depth"] == depths[-1]]
        q["bn_over_nobn_max_lr_deepest"] = ratio(
            geo_mean_lr(deep[deep["model.norm"] == "batch"]), geo_mean_lr(deep[deep["model.norm"] == "none"])
        )
    for norm, k in NORMS.items():
        g = t[t["model.norm"] == norm]
        if len(g):
            depths = sorted(g["model.depth"].unique())
            q[f"max_lr_{k}_shallowest"] = arm_lr(g[g["model.depth"] == depths[0]])
            q[f"max_lr_{k}_deepest"] = arm_lr(g[g["model.depth"] == depths[-1]])
    note_censored(runs, t)
    return q


def max_lr_vs_depth(runs: RunSet, spec: Spec) -> Figure:
    """E11a: largest stable lr vs depth, BN vs no BN (log-log), bracketed by the smallest unstable lr."""
    t = need_max_lr(runs)
    fig = Figure(figsize=(5.5, 4.0), layout="constrained")
    ax = fig.subplots()
    for i, (norm, g) in enumerate(t.groupby("model.norm", sort=False)):
        name = NORM_NAMES.get(str(norm), str(norm))
        g = g.sort_values("model.depth")
        ok = runs.finite(g, "max_stable_lr", f"{name} max stable lr", positive=True)
        c = f"C{i % 8}"
        ax.plot(ok["model.depth"], ok["max_stable_lr"], "o-", color=c, label=name)
        hi = g[np.isfinite(g["min_unstable_lr"])]
        ax.plot(hi["model.depth"], hi["min_unstable_lr"], "v", color=c, mfc="none")
        cens = ok[ok["censored"]]
        if len(cens):
            ax.plot(cens["model.depth"], cens["max_stable_lr"], "^", color=c, ms=9, mfc="none")
            runs.note(f"{name}: censored searches (open triangles) give one-sided bounds")
    ax.set_xscale("log")
    ax.set_yscale("log")
    depths = sorted({int(d) for d in t["model.depth"]})
    ax.set_xticks(depths, [str(d) for d in depths])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("depth")
    ax.set_ylabel("largest stable lr")
    ax.set_title("largest stable lr vs depth")
    # the markers explained in the legend: a ▽ alone is a search with no stable lr down to that lr
    ax.plot([], [], "v", color="0.3", mfc="none", label="smallest unstable lr (alone: no stable lr below it)")
    if t["censored"].any():
        ax.plot([], [], "^", color="0.3", ms=9, mfc="none", label="censored search: one-sided bound")
    ax.legend(fontsize=7)
    return fig


FIGURES = {"max_lr_vs_depth": max_lr_vs_depth}


def fake_runs(root: Path, profile: str) -> str:
    """BN censored at lr 1 at depths 8 and 20; no BN stable to 1e-2 at depth 8 and 1e-3 at 20 (10x, and
    BN / no BN 1000x at the deepest): reproduced."""
    r = FakeRoot(root, profile)
    for depth in (8, 20):
        fake_max_lr_run(r, "E11a", {"model.depth": depth, "model.norm": "batch"}, 1.0, censored=True)
        fake_max_lr_run(r, "E11a", {"model.depth": depth, "model.norm": "none"}, 1e-2 if depth == 8 else 1e-3)
    return "reproduced"
