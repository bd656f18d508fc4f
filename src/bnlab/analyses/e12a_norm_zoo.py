"""E12a · reviewers: do GroupNorm, LayerNorm, InstanceNorm, Batch Renorm and ghost batches also allow BN's large
learning rates?

Reads the max_lr runs per model.norm (the spec's grid); "the other norms" are those the runs cover besides
batch and none."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from bnlab.analyses import grid_values
from bnlab.analyses.fake import FakeRoot
from bnlab.analyses.max_lr_table import (
    arm_max_lrs,
    fake_max_lr_run,
    geo_mean_lr,
    lr_bar_panel,
    max_lr_table,
)
from bnlab.analyses.select import NAN, ratio
from bnlab.analyses.spec import Spec
from bnlab.store.runset import RunSet

FACTOR = 10  # a norm "allows large lrs" when its max stable lr is >= 10x the unnormalized net's


def quantities(runs: RunSet, spec: Spec) -> dict[str, float]:
    norms = [str(n) for n in grid_values(spec, "model.norm", runs.profile)]
    q = {"other_norms_share_10x_no_norm": NAN, "bn_over_no_norm_max_lr": NAN}
    q |= {f"max_lr_{n}": NAN for n in norms}
    t = max_lr_table(runs)
    if not len(t):
        return q
    lr = {n: geo_mean_lr(t[t["model.norm"] == n]) for n in dict.fromkeys(t["model.norm"])}
    none = lr.get("none", NAN)
    others = [n for n in lr if n not in ("none", "batch")]
    big = [lr[n] >= FACTOR * none for n in others if np.isfinite(lr[n])]
    q["other_norms_share_10x_no_norm"] = float(np.mean(big)) if big and np.isfinite(none) else NAN
    q["bn_over_no_norm_max_lr"] = ratio(lr.get("batch", NAN), none)
    q |= arm_max_lrs(runs, t, {f"max_lr_{n}": t[t["model.norm"] == n] for n in norms})
    return q


def norm_zoo(runs: RunSet, spec: Spec) -> Figure:
    """E12a: largest stable lr per normalization layer."""
    return lr_bar_panel(runs, "largest stable lr per norm")


FIGURES = {"norm_zoo": norm_zoo}


def fake_runs(root: Path, profile: str) -> str:
    """BN stable to lr 1, GroupNorm to 0.5, LayerNorm and no norm to 1e-3: half the other norms reach 10x no
    norm: partly."""
    r = FakeRoot(root, profile)
    for norm, lr in (("batch", 1.0), ("group", 0.5), ("layer", 1e-3), ("none", 1e-3)):
        fake_max_lr_run(r, "E12a", {"model.norm": norm}, lr)
    return "partly"
