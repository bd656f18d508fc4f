"""E9 · review Fig. 5: without BN the convolution gradients and the channel activations are nearly rank one at
initialization (aligned across channels).

Reads the gradient_spectrum probe of BN and no-BN runs: medians over every measured conv layer of the
top-1 share σ₁² / Σσ² (no grid values: the figure shows three layers picked by relative depth)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from bnlab.analyses.fake import FakeRoot, probe
from bnlab.analyses.probe_rows import probe_rows
from bnlab.analyses.select import median_where, need_runs, ratio
from bnlab.analyses.spec import Spec
from bnlab.errors import UserError
from bnlab.figures.init_probes import normalized_spectra
from bnlab.store.runset import RunSet, split_batches

PROBE = "gradient_spectrum"
DEPTHS = (0.15, 0.5, 0.85)  # the figure's layers: early, middle, late (fractions of the conv layers)


def quantities(runs: RunSet, spec: Spec) -> dict[str, float]:
    t = probe_rows(runs, PROBE, runs.usable(), metric="top1_share")
    q = {
        f"{matrix}_top1_share_{name}": median_where(t, norm=norm, matrix=matrix)
        for norm, name in (("none", "nobn"), ("batch", "bn"))
        for matrix in ("gradient", "activation")
    }
    q["gradient_top1_share_nobn_over_bn"] = ratio(q["gradient_top1_share_nobn"], q["gradient_top1_share_bn"])
    return q


def channel_rank(runs: RunSet, spec: Spec) -> Figure:
    """E9: normalized singular-value spectra of conv gradients at three depths (bnlab.figures.init_probes)."""
    r = need_runs(runs, "channel_rank")
    arrays: dict[str, dict[str, np.ndarray]] = {}
    labels = runs.labels(r)
    for i, (_, row) in enumerate(r.iterrows()):
        a = split_batches(runs.arrays(row, PROBE))[0]
        if a:
            arrays[labels.iloc[i]] = a
    if not arrays:
        raise UserError(f"no {PROBE} arrays")
    common = None
    for a in arrays.values():
        names = [k[: -len("/gradient_sv")] for k in a if k.endswith("/gradient_sv")]
        common = names if common is None else [n for n in common if n in names]
    common = [n for n in (common or []) if n != "conv1"] or (common or [])  # the stem sees raw pixels
    if not common:
        raise UserError("the runs share no layer with gradient spectra")
    pick = list(dict.fromkeys(common[int(round(f * (len(common) - 1)))] for f in DEPTHS))
    runs.note(f"layers shown: {', '.join(pick)} (early, middle, late of {len(common)} conv layers)")
    return normalized_spectra(arrays, pick)


FIGURES = {"channel_rank": channel_rank}


def fake_runs(root: Path, profile: str) -> str:
    """Top-1 share 0.95 without BN, 0.3 with BN at six conv layers (random spectra): reproduced."""
    rng = np.random.default_rng(0)
    r = FakeRoot(root, profile)
    for norm, top in (("batch", 0.3), ("none", 0.95)):
        d = r.run("E9", {"model.norm": norm})
        layers = [f"layer{i}.conv" for i in range(6)]
        rows = [
            {"metric": "top1_share", "value": top, "matrix": mx, "layer": n, "norm_stats": norm}
            for n in layers
            for mx in ("gradient", "activation")
        ]
        sv = {f"step0/{n}/gradient_sv": np.sort(rng.uniform(0, 1, 8))[::-1] for n in layers}
        probe(d, PROBE, rows, sv)
    return "reproduced"
