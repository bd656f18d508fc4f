"""E12e · reviewer 3: the input-independent gradient is larger without BN, and SGD stays below 2(1+β).

Reads the gradient_geometry rows (input-independent fraction of the whole model's gradient, radial share of
the mean gradient per weight) and the hessian_top_eig rows (lr·λ_max and the stability limit 2(1+β), both
computed by the probe from the run's own lr and momentum); no grid value is typed here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from bnlab.analyses.fake import FakeRoot, probe
from bnlab.analyses.select import NAN, mean, median, need_runs, ratio
from bnlab.analyses.spec import Spec
from bnlab.figures import dynamics
from bnlab.store.runset import RunSet


def _fraction(g: pd.DataFrame) -> pd.DataFrame:
    """Input-independent fraction ‖E g_B‖² / E‖g_B‖² of the whole model's gradient."""
    return g[(g["metric"] == "input_independent_fraction") & (g["layer"] == "model")]


def _radial(g: pd.DataFrame) -> pd.DataFrame:
    """Radial share |⟨g, w⟩|/‖w‖ of the mean gradient, one row per weight."""
    if "direction" not in g.columns:
        return g.iloc[0:0]
    return g[(g["metric"] == "radial_fraction") & (g["direction"] == "mean_gradient")]


def _curvature(h: pd.DataFrame) -> pd.DataFrame:
    """One row per step: lambda_lr and limit (the first row of each)."""
    return h.pivot_table(index="step", columns="metric", values="value", aggfunc="first")


def quantities(runs: RunSet, spec: Spec) -> dict[str, float]:
    q = dict.fromkeys(
        (
            "nobn_over_bn_input_independent_fraction",
            "lr_lambda_over_limit_max_nobn",
            "lr_lambda_over_limit_max_bn",
            "radial_fraction_median_bn",
            "radial_fraction_median_nobn",
        ),
        NAN,
    )
    r = runs.usable()
    g = runs.probe("gradient_geometry", r)
    if len(g):
        f = _fraction(g)
        first = f[f["step"] == f["step"].min()]
        q["nobn_over_bn_input_independent_fraction"] = ratio(
            mean(first[first["norm_stats"] == "none"]["value"]),
            mean(first[first["norm_stats"] == "batch"]["value"]),
        )
        rad = _radial(g)
        q["radial_fraction_median_bn"] = median(rad[rad["norm_stats"] == "batch"]["value"])
        q["radial_fraction_median_nobn"] = median(rad[rad["norm_stats"] == "none"]["value"])
    h = runs.probe("hessian_top_eig", r)
    if len(h):
        for stats, name in (("none", "nobn"), ("batch", "bn")):
            w = _curvature(h[h["norm_stats"] == stats])
            if {"lambda_lr", "limit"} <= set(w.columns):
                over = (w["lambda_lr"] / w["limit"]).to_numpy(float)
                over = over[np.isfinite(over)]
                q[f"lr_lambda_over_limit_max_{name}"] = float(over.max()) if len(over) else NAN
    return q


def geometry(runs: RunSet, spec: Spec) -> Figure:
    """E12e: lr·λ_max vs the stability limit 2(1+β); input-independent gradient fraction; radial share."""
    r = need_runs(runs, "geometry")
    curvature, fraction, radial = [], [], []
    h = runs.probe("hessian_top_eig", r)
    for label, g in h.groupby("label", sort=False) if len(h) else []:
        w = _curvature(g)
        if "lambda_lr" in w.columns:
            w = runs.finite(w.reset_index(), "lambda_lr", f"{label} lr·λ_max", positive=True)
            curvature.append(w.assign(label=label))
    geo = runs.probe("gradient_geometry", r)
    for label, g in geo.groupby("label", sort=False) if len(geo) else []:
        f = runs.finite(_fraction(g), "value", f"{label} input-independent fraction")
        fraction.append(f[["step", "value"]].assign(label=label))
        rad = runs.finite(_radial(g), "value", f"{label} radial fraction")
        med = rad.groupby("step")["value"].median()
        radial.append(pd.DataFrame({"step": med.index, "value": med.to_numpy(float), "label": label}))

    def cat(frames: list[pd.DataFrame]) -> pd.DataFrame:
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    return dynamics.geometry_figure(cat(curvature), cat(fraction), cat(radial))


FIGURES = {"geometry": geometry}


def fake_runs(root: Path, profile: str) -> str:
    """No BN: input-independent fraction 6x BN's, lr·λ_max below 2(1+β) = 3.8 (BN's above): reproduced.
    One lr·λ_max is negative (a log axis: named, not drawn)."""
    r = FakeRoot(root, profile)
    for norm, lr, frac, lam in (("batch", 0.1, 0.1, 3.0), ("none", 1e-4, 0.6, 0.5)):
        d = r.run("E12e", {"model.norm": norm, "optim.lr": lr}, step=4)
        geo = [
            {
                "metric": "input_independent_fraction",
                "value": frac * (1 + 0.1 * st),
                "step": st,
                "norm_stats": norm,
            }
            for st in (0, 4)
        ]
        geo += [
            {
                "metric": "radial_fraction",
                "value": 0.2,
                "direction": "mean_gradient",
                "layer": f"conv{i}",
                "step": st,
                "norm_stats": norm,
            }
            for i in range(3)
            for st in (0, 4)
        ]
        probe(d, "gradient_geometry", geo)
        hess = [
            {"metric": m, "value": v, "step": st, "norm_stats": norm}
            for st in (0, 4)
            for m, v in (("lambda_lr", lam * (1 + st / 4)), ("limit", 3.8))  # 2(1 + beta), beta = 0.9
        ]
        hess.append({"metric": "lambda_lr", "value": -1.0, "step": 8, "norm_stats": norm})
        probe(d, "hessian_top_eig", hess)
    return "reproduced"
