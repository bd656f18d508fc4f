"""E2 · Eq. 2: SGD noise E‖α(g_B − g)‖² stays below the bound α²C/|B|; large lrs make SGD noisier.

Reads only the sgd_noise probe rows (noise, bound, noise_over_bound, per step and statistics mode); α and
|B| are the probe's own (the runs' lr and the probe's batch size), no grid value is typed here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from bnlab.analyses.fake import FakeRoot, probe
from bnlab.analyses.probe_rows import need_probe
from bnlab.analyses.select import NAN, mean, ratio
from bnlab.analyses.spec import Spec
from bnlab.figures import dynamics
from bnlab.store.runset import RunSet


def _at(t: pd.DataFrame, step: object, metric: str) -> tuple[float, float]:
    row = t[(t["step"] == step) & (t["metric"] == metric)]
    if not len(row):
        return NAN, NAN
    return float(row["value"].iloc[0]), float(pd.to_numeric(row.get("se"), errors="coerce").iloc[0])


def quantities(runs: RunSet, spec: Spec) -> dict[str, float]:
    """The no-BN ratio noise / bound at the step where it is largest, with its standard error by the delta
    method from the two estimates' own (noise: over minibatches; bound: over examples; independent samples),
    the minibatches it rests on and the bound's exact without-replacement factor (N − b)/(N − 1)."""
    keys = (
        "nobn_noise_over_bound_max",
        "nobn_noise_over_bound_se",
        "nobn_noise_minibatches",
        "nobn_bound_without_replacement_factor",
        "bn_noise_over_bound_max",
        "bn_over_nobn_noise_first",
    )
    q = dict.fromkeys(keys, NAN)
    t = runs.probe("sgd_noise", runs.usable())
    if t.empty:
        return q
    nb = t[t["metric"] == "noise_over_bound"]
    for stats, key in (("none", "nobn_noise_over_bound_max"), ("batch", "bn_noise_over_bound_max")):
        v = pd.to_numeric(nb[nb["norm_stats"] == stats]["value"], errors="coerce")
        q[key] = float(v.max()) if v.notna().any() else NAN
    none = t[t["norm_stats"] == "none"]
    ratios = none[none["metric"] == "noise_over_bound"]
    if len(ratios) and ratios["value"].notna().any():
        at = ratios.loc[pd.to_numeric(ratios["value"], errors="coerce").idxmax()]
        key = (at["run_id"], at["step"])
        one = none[(none["run_id"] == key[0])]
        (n, n_se), (b, b_se) = _at(one, key[1], "noise"), _at(one, key[1], "bound")
        q["nobn_noise_over_bound_se"] = q["nobn_noise_over_bound_max"] * float(np.hypot(n_se / n, b_se / b))
        q["nobn_noise_minibatches"] = float(at.get("n_batches", NAN))
        wor, _ = _at(one, key[1], "bound_wor")
        q["nobn_bound_without_replacement_factor"] = wor / b if np.isfinite(wor) and b else NAN
        runs.note(
            f"no-BN noise / bound at its largest: run {key[0]}, step {key[1]}, over "
            f"{q['nobn_noise_minibatches']:.0f} minibatches"
        )
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
                ("bound_wor", 6 * s * 0.99),
                ("noise_over_bound", 5 / 6),
            ):
                rows.append(
                    {
                        "metric": m,
                        "value": v,
                        "se": 0.1 * v,
                        "step": step,
                        "norm_stats": norm,
                        "n_batches": 16,
                    }
                )
        probe(d, "sgd_noise", rows)
    return "reproduced"
