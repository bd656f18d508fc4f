"""E4 · Fig. 3: with BN the minibatch loss keeps falling for far larger steps η than without BN.

Reads the step_size_scan probe rows (r(η) along the gradient, per probed minibatch); the η grid is the
probe's own (the spec's probe options, default 25 log-spaced points in [1e-5, 1]), no grid value is typed
here. The one literal is the paper's: the η near which r without BN exceeds 1e6 (Fig. 3)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from bnlab.analyses.fake import FakeRoot, probe
from bnlab.analyses.probe_rows import need_probe
from bnlab.analyses.select import NAN, median, ratio
from bnlab.analyses.spec import Spec
from bnlab.figures import dynamics
from bnlab.store.runset import RunSet

PAPER_BLOWUP_ETA = 5e-3  # Fig. 3: without BN, r > 1e6 by η ≈ 5e-3 (a property of the paper, not of our grid)


def largest_helpful_step(g: pd.DataFrame) -> float:
    """Largest η such that r(η') < 1 for every η' <= η (the first crossing of r = 1), NaN if r(η_min) >= 1."""
    g = g.sort_values("eta")
    r = pd.to_numeric(g["value"], errors="coerce").to_numpy(float)
    eta = g["eta"].to_numpy(float)
    below = np.isfinite(r) & (r < 1)
    if not below.any() or not below[0]:
        return NAN
    stop = np.argmin(below) if not below.all() else len(below)
    return float(eta[stop - 1])


def quantities(runs: RunSet, spec: Spec) -> dict[str, float]:
    q = dict.fromkeys(
        (
            "largest_helpful_step_bn",
            "largest_helpful_step_nobn",
            "bn_over_nobn_largest_helpful_step",
            "min_ratio_bn",
            "eta_of_min_ratio_bn",
            "ratio_nobn_at_paper_blowup_eta",
        ),
        NAN,
    )
    t = runs.probe("step_size_scan", runs.usable())
    if t.empty:
        return q
    t = t[(t["metric"] == "ratio") & (t.get("direction", "gradient") == "gradient")]
    for stats, name in (("batch", "bn"), ("none", "nobn")):
        g = t[t["norm_stats"] == stats]
        if not len(g):
            continue
        q[f"largest_helpful_step_{name}"] = median([largest_helpful_step(s) for _, s in g.groupby("step")])
        first = g[g["step"] == g["step"].min()]
        if stats == "batch":
            fin = first[np.isfinite(first["value"].astype(float))]
            if len(fin):
                i = fin["value"].astype(float).idxmin()
                q["min_ratio_bn"] = float(fin.loc[i, "value"])
                q["eta_of_min_ratio_bn"] = float(fin.loc[i, "eta"])
        else:
            j = (np.log(first["eta"].astype(float)) - np.log(PAPER_BLOWUP_ETA)).abs().idxmin()
            q["ratio_nobn_at_paper_blowup_eta"] = float(first.loc[j, "value"])
    q["bn_over_nobn_largest_helpful_step"] = ratio(
        q["largest_helpful_step_bn"], q["largest_helpful_step_nobn"]
    )
    return q


def step_size(runs: RunSet, spec: Spec) -> Figure:
    """E4 / Fig. 3: r(η) = L_B(θ − ηg)/L_B(θ) at minibatches t, BN vs no BN, log y (bnlab.figures.dynamics)."""
    t = need_probe(runs, "step_size_scan", "step_size")
    t = t[t["metric"] == "ratio"]
    if "direction" in t.columns:
        t = t[t["direction"] == "gradient"]
    bad = t[~(pd.to_numeric(t["value"], errors="coerce").between(0, np.inf, inclusive="neither"))]
    if len(bad):
        runs.note(
            f"{len(bad)} of {len(t)} loss ratios non-finite or non-positive (overflowed losses): "
            "left out of the lines, counted in the legend"
        )
    t = t.assign(step=t["step"].astype(int) + 1)  # minibatch t = step + 1 (the paper counts from 1)
    return dynamics.step_size_curves(
        t[["probe", "metric", "value", "eta", "direction", "label", "step"]], panel="label", hue="step"
    )


FIGURES = {"step_size": step_size}


def fake_runs(root: Path, profile: str) -> str:
    """r(η) falls below 1 up to η = 0.1 with BN and 1e-3 without (then grows like η³; the largest η
    overflows): BN / no-BN largest helpful step ~100, reproduced."""
    r = FakeRoot(root, profile)
    eta = np.geomspace(1e-5, 1, 16)
    for norm, lr, crit in (("batch", 0.1, 0.1), ("none", 1e-4, 1e-3)):
        d = r.run("E4", {"model.norm": norm, "optim.lr": lr}, step=7)
        rows = []
        for step in (0, 3, 6):
            ratios = np.where(eta < crit, 1 - 0.3 * eta / crit, (eta / crit) ** 3)
            ratios[-1] = np.inf  # an overflowed loss: must be named, not drawn
            rows += [
                {
                    "metric": "ratio",
                    "value": float(v),
                    "eta": float(e),
                    "direction": "gradient",
                    "step": step,
                    "norm_stats": norm,
                }
                for e, v in zip(eta, ratios)
            ]
        probe(d, "step_size_scan", rows)
    return "reproduced"
