"""E5 · Fig. 4: without BN, divergence comes from activations that grow with depth along the diverging update.

Reads the diverging_step task's arrays (s and each scanned layer's channel mean/var along θ + sΔθ) and its
table (which paper layer each module is). The layers are the ones the task scanned (the spec's
task_options.layers, paper layers 8, 44, 80), first and last in the order it wrote them; none is typed here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from bnlab.analyses.fake import FakeRoot, probe
from bnlab.analyses.select import NAN, need_runs
from bnlab.analyses.spec import Spec
from bnlab.figures import dynamics
from bnlab.store.runset import RunSet

KEYS = ("log10_mean_first_layer", "log10_mean_last_layer", "log10_mean_growth", "log10_var_last_layer")


def _moments(arr: dict[str, np.ndarray]) -> dict[str, float]:
    """log10 of the largest |channel mean| (first and last scanned layer) and variance (last) at s = 1."""
    layers = [k[5:] for k in arr if k.startswith("mean/")]
    with np.errstate(all="ignore"):  # s = 1 is the last row of each [grid, channels] array
        first = np.log10(np.nanmax(np.abs(arr[f"mean/{layers[0]}"][-1])))
        last = np.log10(np.nanmax(np.abs(arr[f"mean/{layers[-1]}"][-1])))
        var = np.log10(np.nanmax(arr[f"var/{layers[-1]}"][-1]))
    return dict(zip(KEYS, (float(first), float(last), float(last - first), float(var))))


def quantities(runs: RunSet, spec: Spec) -> dict[str, float]:
    """The moments along the diverging update of the smallest lr that diverged (the barely diverging step:
    the rule's), and the growth along the update of the largest lr (lr 0.1 in the paper's setting)."""
    q = dict.fromkeys((*KEYS, "diverged_lr", "log10_mean_growth_largest_lr", "largest_diverged_lr"), NAN)
    scanned = []
    for _, row in runs.usable().iterrows():
        arr = runs.arrays(row, "diverging_step")
        if "s" not in arr or not any(k.startswith("mean/") for k in arr):
            runs.note(f"run {row['run_id']} (lr {row.get('optim.lr')}) did not diverge: no update to scan")
            continue
        scanned.append((float(row.get("optim.lr")), _moments(arr)))
    if not scanned:
        return q
    scanned.sort(key=lambda t: t[0])
    (lo, m_lo), (hi, m_hi) = scanned[0], scanned[-1]
    q.update(
        m_lo, diverged_lr=lo, log10_mean_growth_largest_lr=m_hi["log10_mean_growth"], largest_diverged_lr=hi
    )
    return q


def diverging_step(runs: RunSet, spec: Spec) -> Figure:
    """E5 / Fig. 4: channel |mean| and variance along the diverging update, channel × % of step, log colour."""
    r = need_runs(runs, "diverging_step")
    for _, row in r.iterrows():
        arr = runs.arrays(row, "diverging_step")
        if "s" in arr and any(k.startswith("mean/") for k in arr):
            t = runs.probe("diverging_step", r[r["run_id"] == row["run_id"]])
            titles = {}
            if len(t) and "paper_layer" in t.columns:
                for _, tr in t.dropna(subset=["paper_layer"]).drop_duplicates("layer").iterrows():
                    titles[str(tr["layer"])] = f"{tr['layer']} (paper layer {tr['paper_layer']})"
            for k, v in arr.items():
                if not np.all(np.isfinite(v)):
                    runs.note(
                        f"{k}: {int((~np.isfinite(v)).sum())} non-finite channel moments (overflow) left blank"
                    )
            return dynamics.channel_heatmaps(arr, titles=titles)
    # no diverging update: show why, with the training loss of the run(s)
    curves = []
    for _, row in r.iterrows():
        m = runs.metrics(row)
        if len(m) and "split" in m.columns:
            tr = m[m["split"] == "train"]
            tr = runs.finite(tr, "loss", f"run {row['run_id']} training loss", positive=True)
            curves.append((f"{runs.label(row)} (lr {row.get('optim.lr')})", tr))
        runs.note(
            f"run {row['run_id']} did not diverge (state {row['state']}): no diverging update to scan; "
            "raise optim.lr"
        )
    return dynamics.loss_curves(curves, title="no diverging update: the run's training loss")


FIGURES = {"diverging_step": diverging_step}


def fake_runs(root: Path, profile: str) -> str:
    """One unnormalized run whose channel means at s = 1 grow from ~1 (paper layer 8) through 1e3 (44) to
    1e8 (80), one variance overflowed: growth ~8 orders, reproduced."""
    rng = np.random.default_rng(0)
    d = FakeRoot(root, profile).run("E5", {"model.norm": "none", "optim.lr": 1.0}, step=5)
    s = np.linspace(0, 1, 5)
    arrays = {"step4/s": s, "step4/loss": 10 ** (4 * s)}
    rows = []
    for layer, paper_layer, orders in (("layer1.0", 8, 0.0), ("layer2.0", 44, 3.0), ("layer3.0", 80, 8.0)):
        mean = 10 ** (orders * s[:, None]) * rng.uniform(0.5, 1.5, (5, 16))
        var = mean**2
        if layer == "layer3.0":
            var[-1, 0] = np.inf  # an overflowed moment: named, left blank
        arrays[f"step4/mean/{layer}"], arrays[f"step4/var/{layer}"] = mean, var
        rows.append(
            {
                "metric": "max_abs_mean",
                "value": float(mean[-1].max()),
                "layer": layer,
                "paper_layer": paper_layer,
                "s": 1.0,
            }
        )
    probe(d, "diverging_step", rows, arrays)
    return "reproduced"
