"""E7 · Fig. 6: at initialization an unnormalized net predicts the same class for nearly every input; BN's
outputs depend on the input.

Grid values read from the spec: the (norm, placement) pairs, the blocks and the output-bias variants of its
base grid give one top-class share per variant (`top_share_<norm>_<placement>_<block>_<default|balanced>`);
the verdict reads the paper's setting (every layer normalized or none, post-activation, default bias)."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from bnlab.analyses import grid_values
from bnlab.analyses.fake import FakeRoot, probe
from bnlab.analyses.select import mean, need_runs, prefer, ratio
from bnlab.analyses.spec import Spec
from bnlab.figures.init_probes import logit_gradient_heatmaps
from bnlab.store.runset import RunSet, split_batches

PROBE = "output_bias"


def variants(spec: Spec) -> list[tuple[str, str, str, bool]]:
    """(norm, placement, block, balanced bias) of every point of the spec's base grid, in grid order."""
    pairs = zip(grid_values(spec, "model.norm"), grid_values(spec, "model.placement"))
    blocks = grid_values(spec, "model.block")
    biases = grid_values(spec, "model.init.balanced_output_bias")
    return [(n, p, b, bool(x)) for (n, p), b, x in itertools.product(pairs, blocks, biases)]


def variant_key(norm: str, placement: str, block: str, balanced: bool) -> str:
    return f"top_share_{norm}_{placement}_{block}_{'balanced' if balanced else 'default'}"


def quantities(runs: RunSet, spec: Spec) -> dict[str, float]:
    r = runs.usable()
    t = runs.probe(PROBE, r)
    if t.empty:
        runs.note(f"no {PROBE} probe rows")

    def metric(sel: pd.DataFrame, name: str) -> float:
        if t.empty:
            return float("nan")
        return mean(t[t["run_id"].isin(sel["run_id"]) & (t["metric"] == name)]["value"])

    base = runs.where(model__placement="all")
    base = base[base["run_id"].isin(r["run_id"])]
    if "model.init.balanced_output_bias" in base.columns:
        base = base[~base["model.init.balanced_output_bias"].astype(bool)]
    post = prefer(base, "model.block", "post")
    norms = post["model.norm"] if "model.norm" in post.columns else pd.Series("", index=post.index)
    bn, nobn = post[norms == "batch"], post[norms == "none"]
    q = {
        "top_class_share_nobn_post": metric(nobn, "top_class_share"),
        "top_class_share_bn_post": metric(bn, "top_class_share"),
        "input_dependence_bn_over_nobn": ratio(
            metric(bn, "input_dependence"), metric(nobn, "input_dependence")
        ),
    }
    for norm, placement, block, balanced in variants(spec):
        sel = runs.where(
            model__norm=norm,
            model__placement=placement,
            model__block=block,
            model__init__balanced_output_bias=balanced,
        )
        q[variant_key(norm, placement, block, balanced)] = metric(
            sel[sel["run_id"].isin(r["run_id"])], "top_class_share"
        )
    return q


def class_bias(runs: RunSet, spec: Spec) -> Figure:
    """E7 / Fig. 6: ∂L/∂z heatmaps (images × classes) per variant and the share of the top predicted class."""
    r = need_runs(runs, "class_bias")
    labels = runs.labels(r)
    arrays = {}
    for i, (_, row) in enumerate(r.iterrows()):
        parts = split_batches(runs.arrays(row, PROBE))
        if "dL_dz" not in parts[0]:
            runs.note(f"run {row['run_id']} ({labels.iloc[i]}): no dL_dz array, left out of the heatmaps")
            continue
        arrays[labels.iloc[i]] = parts[0]
    t = runs.probe(PROBE, r)
    shares = {}
    if len(t):
        g = t[t["metric"] == "top_class_share"].groupby("label", sort=False)["value"]
        shares = {str(k): float(v) for k, v in g.mean().items()}
    return logit_gradient_heatmaps(arrays, top_class_share=shares)


FIGURES = {"class_bias": class_bias}


def fake_runs(root: Path, profile: str) -> str:
    """BN: top-class share 0.3, input dependence 0.3; no BN: 0.98 and 0.01 (random ∂L/∂z): reproduced."""
    rng = np.random.default_rng(0)
    r = FakeRoot(root, profile)
    for norm, share, dep in (("batch", 0.3, 0.3), ("none", 0.98, 0.01)):
        d = r.run("E7", {"model.norm": norm})
        rows = [
            {"metric": "top_class_share", "value": share, "norm_stats": norm},
            {"metric": "input_dependence", "value": dep, "norm_stats": norm},
        ]
        probe(d, PROBE, rows, {"step0/dL_dz": rng.normal(0, 0.01, (32, 10))})
    return "reproduced"
