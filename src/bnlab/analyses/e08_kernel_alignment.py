"""E8 · Table 1: without BN the summands of a kernel gradient share their sign (Σ|d| / |Σd| near 1); with
BN the ratio is orders of magnitude larger.

Reads the kernel_alignment probe at the layers the spec's probe options name (the paper's 18, 54, 90): the
medians pool every measured layer, per reduction (over space, over the batch, over both); Xavier init
preferred where the grid has several inits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from bnlab.analyses import probe_options
from bnlab.analyses.fake import FakeRoot, probe
from bnlab.analyses.probe_rows import need_probe, probe_rows
from bnlab.analyses.select import median_where, prefer, ratio
from bnlab.analyses.spec import Spec, find_specs
from bnlab.figures.init_probes import kernel_alignment_bars
from bnlab.store.runset import RunSet

PROBE = "kernel_alignment"
REDUCES = ("spatial", "batch", "all")  # the probe's reductions: over positions, over the minibatch, both


def quantities(runs: RunSet, spec: Spec) -> dict[str, float]:
    r = prefer(runs.usable(), "model.init.conv", "xavier")
    t = probe_rows(runs, PROBE, r, metric="ratio")
    q: dict[str, float] = {}
    for red in ("all", "batch", "spatial"):
        bn = median_where(t, norm="batch", reduce=red)
        no = median_where(t, norm="none", reduce=red)
        q[f"alignment_bn_over_nobn_{red}"] = ratio(bn, no)
        if red == "all":
            q["alignment_bn_all"] = bn
            q["alignment_nobn_all"] = no
    return q


def kernel_alignment(runs: RunSet, spec: Spec) -> Figure:
    """E8 / Table 1: Σ|d| / |Σd| per layer for each reduction (spatial, batch, all), BN vs no BN, log y."""
    t = need_probe(runs, PROBE, "kernel_alignment")
    tables = {}
    for label, g in t.groupby("label", sort=False):
        v = pd.to_numeric(g[g["metric"] == "ratio"]["value"], errors="coerce").astype(float)
        bad = int((~((v > 0) & np.isfinite(v))).sum())
        if bad:
            runs.note(f"{label}: {bad} non-finite or zero ratios (|Σd| = 0) not drawn on the log axis")
        tables[str(label)] = g
    reduces = [x for x in REDUCES if x in set(t.get("reduce", []))]
    return kernel_alignment_bars(tables, reduces=reduces or ("all",))


FIGURES = {"kernel_alignment": kernel_alignment}


def probe_layers(profile: str) -> list[int]:
    """The layers E8's kernel_alignment probe is asked for under `profile` (its spec's probe options)."""
    return list(probe_options(find_specs(["E8"])[0], PROBE, profile)["layers"])


def fake_runs(root: Path, profile: str) -> str:
    """Ratio 100, 200, 300 (BN) and 2, 4, 6 (no BN) at the spec's layers for each reduction, plus one
    more layer with a zero ratio (|Σd| = 0 is not drawn on the log axis): BN / no BN = 50, reproduced."""
    layers = probe_layers(profile)
    r = FakeRoot(root, profile)
    for norm, value in (("batch", 100.0), ("none", 2.0)):
        d = r.run("E8", {"model.norm": norm})
        rows = [
            {
                "metric": "ratio",
                "value": value * (1 + i),
                "reduce": red,
                "layer": f"conv{i}",
                "paper_layer": pl,
                "norm_stats": norm,
            }
            for red in REDUCES
            for i, pl in enumerate(layers)
        ]
        extra = max(layers) + 10  # a layer the spec does not ask for
        rows.append(
            {
                "metric": "ratio",
                "value": 0.0,
                "reduce": "all",
                "layer": "conv9",
                "paper_layer": extra,
                "norm_stats": norm,
            }
        )
        probe(d, PROBE, rows)
    return "reproduced"
