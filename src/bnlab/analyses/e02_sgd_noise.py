"""E2 · Eq. 2: SGD noise E‖α(g_B − g)‖² stays below the bound α²C/|B|; large lrs make SGD noisier.

Reads only the sgd_noise probe rows (noise, bound, noise_over_bound, per step and statistics mode); α and
|B| are the probe's own (the runs' lr and the probe's batch size), no grid value is typed here."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from bnlab.analyses.fake import FakeRoot, probe
from bnlab.analyses.probe_rows import need_probe
from bnlab.analyses.select import NAN, mean, ratio
from bnlab.analyses.spec import Spec
from bnlab.figures import dynamics
from bnlab.store.runset import RunSet


def quantities(runs: RunSet, spec: Spec) -> dict[str, float]:
    q = {"nobn_noise_over_bound_max": NAN, "bn_noise_over_bound_max": NAN, "bn_over_nobn_noise_first": NAN}
    t = runs.probe("sgd_noise", runs.usable())
    if t.empty:
        return q
    nb = t[t["metric"] == "noise_over_bound"]
    for stats, key in (("none", "nobn_noise_over_bound_max"), ("batch", "bn_noise_over_bound_max")):
        v = pd.to_numeric(nb[nb["norm_stats"] == stats]["value"], errors="coerce")
        q[key] = float(v.max()) if v.notna().any() else NAN
    noise = t[t["metric"] == "noise"]
    first = noise[noise["step"] == noise["step"].min()]
    q["bn_over_nobn_noise_first"] = ratio(
        mean(first[first["norm_stats"] == "batch"]["value"]),
        mean(first[first["norm_stats"] == "none"]["value"]),
    )
    return q


def sgd_noise(runs: RunSet, spec: Spec) -> Figure:
    """E2 / Eq. 2: measured SGD noise vs α²/|B| with the bound α²C/|B| (bnlab.figures.dynamics)."""
    t = need_probe(runs, "sgd_noise", "sgd_noise")
    keep = ["probe", "layer", "paper_layer", "metric", "value", "se", "run_id", "step", "label"]
    t = t[[c for c in keep if c in t.columns]]
    bad = t[
        t["metric"].isin(["noise", "alpha_sq_over_b"]) & ~(pd.to_numeric(t["value"], errors="coerce") > 0)
    ]
    for _, b in bad.iterrows():
        runs.note(f"run {b['run_id']} step {b['step']}: {b['metric']} = {b['value']} not drawn (log axes)")
    return dynamics.noise_vs_scale(t, hue="label")


FIGURES = {"sgd_noise": sgd_noise}


def fake_runs(root: Path, profile: str) -> str:
    """BN (lr 0.1) and no BN (lr 1e-4), two probe steps each, noise = 5/6 of the bound: reproduced."""
    r = FakeRoot(root, profile)
    for norm, alpha in (("batch", 0.1), ("none", 1e-4)):
        d = r.run("E2", {"model.norm": norm, "optim.lr": alpha}, step=6)
        rows = []
        for step, a in ((0, alpha), (6, alpha / 10)):
            s = a * a / 16  # alpha^2 / |B| at |B| = 16
            for m, v in (
                ("alpha_sq_over_b", s),
                ("noise", 5 * s),
                ("bound", 6 * s),
                ("noise_over_bound", 5 / 6),
            ):
                rows.append({"metric": m, "value": v, "se": 0.1 * v, "step": step, "norm_stats": norm})
        probe(d, "sgd_noise", rows)
    return "reproduced"
