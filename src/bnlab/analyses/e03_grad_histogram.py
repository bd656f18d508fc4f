"""E3 · Fig. 2: at initialization the gradients of an unnormalized net are heavy-tailed and ~100x larger
than with BN.

The layer is the spec's: the gradient_histogram probe's `layers` option under the profile (the paper's
layer 55); the numbers are read at the measured layer nearest to it (a shallower net maps it by depth)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from bnlab.analyses import probe_options
from bnlab.analyses.fake import FakeRoot, probe
from bnlab.analyses.select import NAN, mean, need_runs, norm_rank, prefer, ratio
from bnlab.analyses.spec import Spec, find_specs
from bnlab.figures.init_probes import gradient_histograms
from bnlab.store.runset import NORM_NAMES, RunSet, split_batches

PROBE = "gradient_histogram"


def probe_layer(spec: Spec, profile: str | None) -> int | str:
    """The layer Fig. 2 is drawn at: the probe's (first) `layers` entry, a paper layer or a module name."""
    layers = probe_options(spec, PROBE, profile).get("layers") or []
    if not layers:
        raise KeyError(f"{spec.id}: the {PROBE} probe names no `layers`")
    return layers[0]


def at_layer(t: pd.DataFrame, layer: int | str) -> pd.DataFrame:
    """Rows of each run at `layer`: a module name, or a paper layer (the run's nearest measured one)."""
    if isinstance(layer, str):
        return t[t["layer"] == layer]
    if "paper_layer" not in t.columns:
        return t
    out = []
    for _, g in t.groupby("run_id", sort=False):
        pl = pd.to_numeric(g["paper_layer"], errors="coerce").astype(float)
        if pl.notna().any():
            out.append(g[pl == pl.loc[(pl - layer).abs().idxmin()]])
    return pd.concat(out) if out else t.iloc[0:0]


def quantities(runs: RunSet, spec: Spec) -> dict[str, float]:
    layer = probe_layer(spec, runs.profile)
    r = prefer(prefer(runs.usable(), "model.init.conv", "xavier"), "model.block", "post")
    t = runs.probe(PROBE, r)
    t = at_layer(t, layer) if len(t) else t
    q: dict[str, float] = {}
    for norm, name in (("batch", "bn"), ("none", "nobn")):
        g = t[t["run_id"].isin(r[r["model.norm"] == norm]["run_id"])] if len(t) else t
        metric = g["metric"] if len(g) else pd.Series(dtype=str)
        q[f"grad_std_{name}"] = mean(g[metric == "std"]["value"]) if len(g) else NAN
        q[f"grad_kurtosis_{name}"] = mean(g[metric == "kurtosis"]["value"]) if len(g) else NAN
    q["grad_std_nobn_over_bn"] = ratio(q["grad_std_nobn"], q["grad_std_bn"])
    if len(t):
        found = sorted({str(v) for v in t["paper_layer"].dropna()}) if "paper_layer" in t.columns else []
        if isinstance(layer, int) and found != [str(layer)]:
            runs.note(f"paper layer {layer} measured at paper layer(s) {', '.join(found) or 'unknown'}")
        if r["model.init.conv"].nunique() == 1:
            runs.note(f"E3 numbers from {r['model.init.conv'].iloc[0]} init, {len(r)} runs")
    else:
        runs.note(f"no {PROBE} probe rows")
    return q


def grad_histograms(runs: RunSet, spec: Spec) -> Figure:
    """E3 / Fig. 2: histogram of ∂L/∂K at the probed layer's kernel, BN vs no BN side by side, own axes."""
    r = need_runs(runs, "grad_histograms")
    layer = probe_layer(spec, runs.profile)
    rowkeys = runs.label_keys(r, exclude=("model.norm", "train.seed"))
    norms = sorted(dict.fromkeys(r["model.norm"]), key=norm_rank) if "model.norm" in r.columns else [None]
    groups = list(dict.fromkeys(r.apply(lambda row: runs.label(row, rowkeys), axis=1))) if rowkeys else [""]
    table = runs.probe(PROBE, r)
    arrays, layers, cells, titles, text, colors = {}, {}, {}, {}, {}, {}
    for _, row in r.iterrows():
        label = runs.label(row)
        parts = split_batches(runs.arrays(row, PROBE))
        t = table[table["run_id"] == row["run_id"]] if len(table) else table
        t = at_layer(t, layer) if len(t) else t
        names = list(dict.fromkeys(t["layer"])) if len(t) else []
        found = sorted({k.rsplit("/", 1)[0] for p in parts for k in p if k.endswith("/hist_counts")})
        name = next((n for n in names if n in found), found[0] if found else None)
        group = runs.label(row, rowkeys) if rowkeys else ""
        cells[label] = (groups.index(group), norms.index(row["model.norm"]) if norms != [None] else 0)
        if name is None:
            arrays[label] = []
            runs.note(f"run {row['run_id']}: no {PROBE} arrays")
            continue
        arrays[label], layers[label] = parts, name
        t = t[t["layer"] == name] if len(t) else t
        std = t[t["metric"] == "std"]["value"].mean() if len(t) else NAN
        kurt = t[t["metric"] == "kurtosis"]["value"].mean() if len(t) else NAN
        pl = t["paper_layer"].dropna().iloc[0] if len(t) and t["paper_layer"].notna().any() else None
        norm = row.get("model.norm")
        titles[label] = f"{NORM_NAMES.get(str(norm), str(norm))}: {name}" + (
            f" (paper layer {pl})" if pl else ""
        )
        titles[label] += f"\n{group}" if rowkeys else ""
        text[label] = f"std {std:.3g}\nkurtosis {kurt:.3g}\n{len(parts)} minibatch(es)"
        colors[label] = "C0" if norm == "batch" else "C1"
        if len(parts) > 1:
            runs.note("histograms of several minibatches are re-binned on one grid (each bin at its centre)")
    return gradient_histograms(
        arrays,
        {lab: layers.get(lab, "") for lab in arrays},
        cells=cells,
        titles=titles,
        text=text,
        colors=colors,
    )


FIGURES = {"grad_histograms": grad_histograms}


def fake_runs(root: Path, profile: str) -> str:
    """BN: std 0.01, kurtosis 0.2; no BN: std 1, kurtosis 20 (2 minibatches, t-distributed histograms) at
    the spec's layer: reproduced (100x the std, heavy tails)."""
    layer = probe_layer(find_specs(["E3"])[0], profile)
    rng = np.random.default_rng(0)
    r = FakeRoot(root, profile)
    for norm, scale, kurt in (("batch", 0.01, 0.2), ("none", 1.0, 20.0)):
        d = r.run("E3", {"model.norm": norm})
        rows = [
            {
                "metric": m,
                "value": v,
                "layer": "layer2.1.conv2",
                "paper_layer": layer,
                "batch": b,
                "norm_stats": norm,
            }
            for b in (0, 1)
            for m, v in (("std", scale), ("kurtosis", kurt))
        ]
        arrays = {}
        for b in (0, 1):
            counts, edges = np.histogram(rng.standard_t(3, 5000) * scale, bins=40)
            arrays[f"step0/b{b}/layer2.1.conv2/hist_counts"] = counts
            arrays[f"step0/b{b}/layer2.1.conv2/hist_edges"] = edges
        probe(d, PROBE, rows, arrays)
    return "reproduced"
