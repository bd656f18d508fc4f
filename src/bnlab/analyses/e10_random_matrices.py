"""E10 · Theorem 1: a deep linear net at init is a product of random matrices whose condition number grows
exponentially with depth; normalization between factors keeps it in check.

Reads the tables the `rmt` task writes (probes/rmt_spectra, rmt_condition, rmt_jacobian); N, M and the
depths are the ones in those tables (the spec's task_options under the profile), never typed here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from bnlab.analyses.fake import FakeRoot, probe
from bnlab.analyses.select import NAN, mean, need_runs, ratio
from bnlab.analyses.spec import Spec
from bnlab.errors import UserError
from bnlab.figures import rmt as rmt_figs
from bnlab.store.runset import RunSet

KEYS = (
    "ks_theorem1_max",
    "ln_kappa_per_factor",
    "ln_kappa_per_factor_closed_form",
    "ln_kappa_per_factor_ratio",
    "normalized_over_plain_ln_kappa_deepest",
)


def slope(g: pd.DataFrame) -> float:
    """Least-squares slope of the mean value vs depth over the deeper half of the depths."""
    m = g.groupby("depth")["value"].mean()
    m = m[np.isfinite(m.to_numpy(float))]
    if len(m) < 2:
        return NAN
    d = m.index.to_numpy(float)
    keep = d >= np.median(d)
    if keep.sum() < 2:
        keep[:] = True
    return float(np.polyfit(d[keep], m.to_numpy(float)[keep], 1)[0])


def quantities(runs: RunSet, spec: Spec) -> dict[str, float]:
    r = runs.usable()
    q = dict.fromkeys(KEYS, NAN)
    s = runs.probe("rmt_spectra", r)
    if len(s):
        ks = s[(s["metric"] == "ks") & (s["dist"] == "gaussian")]
        q["ks_theorem1_max"] = float(ks["value"].max()) if len(ks) else NAN
        if len(ks):
            ms = ", ".join(str(int(m)) for m in sorted(ks["m"].unique()))
            runs.note(f"Theorem 1 at N = {int(ks['n'].iloc[0])}, M = {ms}")
    c = runs.probe("rmt_condition", r)
    if len(c):
        c = c[(c["metric"] == "ln_kappa") & (c["dist"] == "gaussian")]
        measured = slope(c[(c["product"] == "plain") & (c["method"] == "exact")])
        closed = slope(c[c["method"] == "closed_form"])
        q["ln_kappa_per_factor"] = measured
        q["ln_kappa_per_factor_closed_form"] = closed
        q["ln_kappa_per_factor_ratio"] = ratio(measured, closed)
        exact = c[c["method"] == "exact"]
        if len(exact):
            deep = exact[exact["depth"] == exact["depth"].max()]
            q["normalized_over_plain_ln_kappa_deepest"] = ratio(
                mean(deep[deep["product"] == "normalized"]["value"]),
                mean(deep[deep["product"] == "plain"]["value"]),
            )
    return q


def rmt_table(runs: RunSet, name: str) -> pd.DataFrame:
    """The rows of probe table `name` of the usable runs; UserError ("not drawn") when there are none."""
    t = runs.probe(name, need_runs(runs, name))
    if t.empty:
        raise UserError(f"no {name} rows in the E10 runs")
    return t


def rmt_spectra(runs: RunSet, spec: Spec) -> Figure:
    """E10 / Theorem 1 figure: squared singular values of products of M Gaussian matrices (bnlab.figures.rmt)."""
    return rmt_figs.spectra_figure(rmt_table(runs, "rmt_spectra"))


def rmt_condition(runs: RunSet, spec: Spec) -> Figure:
    """E10: ln κ vs depth of random products, exact vs naive vs Lyapunov (bnlab.figures.rmt)."""
    return rmt_figs.condition_figure(rmt_table(runs, "rmt_condition"))


def rmt_jacobian(runs: RunSet, spec: Spec) -> Figure:
    """E10: ln κ of input-output Jacobians of deep MLPs with and without BN (bnlab.figures.rmt)."""
    return rmt_figs.jacobian_figure(rmt_table(runs, "rmt_jacobian"))


FIGURES = {"rmt_spectra": rmt_spectra, "rmt_condition": rmt_condition, "rmt_jacobian": rmt_jacobian}


def fake_runs(root: Path, profile: str) -> str:
    """Flat Theorem 1 histograms with KS 0.01, ln κ = 2 · depth for the exact, closed-form and normalized
    products (measured / closed form = 1), and a Jacobian table: reproduced."""
    r = FakeRoot(root, profile)
    d = r.run("E10", {"task": "rmt", "model.norm": "none"})
    rows = []
    for m in (1, 3):
        common = {"dist": "gaussian", "m": m, "n": 50, "draws": 1, "norm_stats": "none"}
        edges = np.linspace(0, (m + 1) ** (m + 1) / m**m, 11)  # Theorem 1's support [0, (M+1)^(M+1)/M^M]
        for lo, hi in zip(edges[:-1], edges[1:]):
            rows.append(
                {"metric": "hist_density", "value": 1 / edges[-1], "bin_left": lo, "bin_right": hi, **common}
            )
        rows.append({"metric": "ks", "value": 0.01, "bin_left": None, "bin_right": None, **common})
    probe(d, "rmt_spectra", rows)
    d = r.run("E10", {"task": "rmt", "model.norm": "batch"})
    rows = [
        {
            "metric": "ln_kappa",
            "value": 2.0 * depth,
            "dist": "gaussian",
            "product": product,
            "method": method,
            "depth": depth,
            "seed": 0,
            "n": 16,
            "norm_stats": "none",
        }
        for depth in range(1, 9)
        for product, method in (("plain", "exact"), ("plain", "closed_form"), ("normalized", "exact"))
    ]
    probe(d, "rmt_condition", rows)
    d = r.run("E10", {"task": "rmt", "model.norm": "batch", "model.depth": 2})
    rows = [
        {
            "metric": metric,
            "value": 1.0 * depth,
            "activation": act,
            "bn": bn,
            "depth": depth,
            "example": 0,
            "width": 8,
            "mode": "batch",  # the Jacobian's statistics, as rmt.study.mlp_jacobians writes them today
            "norm_stats": "batch",
            "resolved": 1.0,
        }
        for act in ("linear", "relu")
        for bn in (False, True)
        for depth in (1, 2, 4)
        for metric in ("ln_kappa", "ln_kappa_nonzero")
    ]
    probe(d, "rmt_jacobian", rows)
    return "reproduced"
