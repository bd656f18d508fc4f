"""E9b (reviewer 1's question, not a claim of the paper): does BN change the intra-layer vs
intra-minibatch variance of the gradient?

Reads the gradient_variance probe (per-example gradients, in the statistics mode its options name) at the
layers the spec's probe options name; medians over those layers, BN vs no BN."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from bnlab.analyses import probe_options
from bnlab.analyses.fake import FakeRoot, probe
from bnlab.analyses.probe_rows import need_probe, probe_rows
from bnlab.analyses.select import median_where, ratio
from bnlab.analyses.spec import Spec, find_specs
from bnlab.figures.init_probes import variance_by_layer
from bnlab.store.runset import RunSet

PROBE = "gradient_variance"


def quantities(runs: RunSet, spec: Spec) -> dict[str, float]:
    t = probe_rows(runs, PROBE, runs.usable())

    def med(norm: str, metric: str) -> float:
        return median_where(t, norm=norm, metric=metric)

    return {
        "intra_batch_var_nobn_over_bn": ratio(med("none", "intra_batch"), med("batch", "intra_batch")),
        "intra_layer_var_nobn_over_bn": ratio(med("none", "intra_layer"), med("batch", "intra_layer")),
        "batch_over_layer_var_bn": ratio(med("batch", "intra_batch"), med("batch", "intra_layer")),
        "batch_over_layer_var_nobn": ratio(med("none", "intra_batch"), med("none", "intra_layer")),
    }


def gradient_variance(runs: RunSet, spec: Spec) -> Figure:
    """E9b: intra-layer vs intra-minibatch variance of the gradient per layer, BN vs no BN, log y."""
    t = need_probe(runs, PROBE, "gradient_variance")
    tables: dict[str, pd.DataFrame] = {}
    for label, g in t.groupby("label", sort=False):
        keep = [
            runs.finite(g[g["metric"] == m], "value", f"{label} {m}", positive=True)
            for m in ("intra_layer", "intra_batch")
        ]
        tables[str(label)] = pd.concat(keep)
    mode = t["per_example"].iloc[0] if "per_example" in t.columns else "?"
    runs.note(f"per-example gradients in {mode} mode")
    return variance_by_layer(tables)


FIGURES = {"gradient_variance": gradient_variance}


def fake_runs(root: Path, profile: str) -> str:
    """Intra-layer 1e-3 and intra-minibatch 1e-2 at the spec's layers for BN and no BN: the rule is
    `none` (a reviewer's question), so inconclusive."""
    opts = probe_options(find_specs(["E9b"])[0], PROBE, profile)
    layers = opts.get("layers") or [1, 2, 3]  # the smoke profile's probe measures every layer
    r = FakeRoot(root, profile)
    for norm in ("batch", "none"):
        d = r.run("E9b", {"model.norm": norm})
        rows = [
            {
                "metric": m,
                "value": v,
                "layer": f"conv{i}",
                "paper_layer": pl,
                "norm_stats": norm,
                "per_example": opts.get("per_example", "batch"),
            }
            for i, pl in enumerate(layers)
            for m, v in (("intra_layer", 1e-3), ("intra_batch", 1e-2))
        ]
        probe(d, PROBE, rows)
    return "inconclusive"
