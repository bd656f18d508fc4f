"""E12d · reviewers: do orthogonal / delta-orthogonal init (Xiao et al. 2018), Fixup or SkipInit let an
unnormalized ResNet take larger learning rates?

Reads the max_lr runs per init arm: the spec's zipped grid axis model.init.conv + model.fixup +
model.skipinit; the reference arm is the paper's plain Xavier init."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
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

PAPER_INIT = "xavier"  # the paper's conv init (E1's base config), plain: the reference arm
ARM = ("model.init.conv", "model.fixup", "model.skipinit")


def arm_key(conv: str, fixup: bool, skipinit: bool) -> str:
    """The quantity key of one init arm: max_lr_fixup, max_lr_skipinit, else max_lr_<conv init>."""
    return "max_lr_" + ("fixup" if fixup else "skipinit" if skipinit else conv)


def arms(runs: RunSet, spec: Spec) -> list[tuple[str, bool, bool]]:
    """The spec's init arms under the runs' profile: (conv init, fixup, skipinit)."""
    cols = [grid_values(spec, k, runs.profile) for k in ARM]
    return [(str(c), bool(f), bool(s)) for c, f, s in zip(*cols)]


def arm_rows(t: pd.DataFrame, conv: str, fixup: bool, skipinit: bool) -> pd.DataFrame:
    return t[
        (t["model.init.conv"] == conv)
        & (t["model.fixup"].astype(bool) == fixup)
        & (t["model.skipinit"].astype(bool) == skipinit)
    ]


def quantities(runs: RunSet, spec: Spec) -> dict[str, float]:
    grid = arms(runs, spec)
    q = {"best_other_init_over_xavier_max_lr": NAN} | {arm_key(*a): NAN for a in grid}
    t = max_lr_table(runs)
    if not len(t):
        return q
    base = arm_rows(t, PAPER_INIT, False, False)
    others = t.drop(base.index)
    best = max((geo_mean_lr(others.loc[[i]]) for i in others.index), default=NAN)
    q["best_other_init_over_xavier_max_lr"] = ratio(best, geo_mean_lr(base))
    q |= arm_max_lrs(runs, t, {arm_key(*a): arm_rows(t, *a) for a in grid})
    return q


def init_zoo(runs: RunSet, spec: Spec) -> Figure:
    """E12d: largest stable lr of the unnormalized net per initialization."""
    return lr_bar_panel(runs, "largest stable lr per init (no BN)")


FIGURES = {"init_zoo": init_zoo}


def fake_runs(root: Path, profile: str) -> str:
    """No BN: Xavier stable to lr 1e-3, orthogonal to 3e-3, Fixup to 2e-2 (20x Xavier): reproduced."""
    r = FakeRoot(root, profile)
    for conv, fixup, skipinit, lr in (
        (PAPER_INIT, False, False, 1e-3),
        ("orthogonal", False, False, 3e-3),
        ("kaiming_fan_in", True, False, 2e-2),
    ):
        cfg = {
            "model.norm": "none",
            "model.init.conv": conv,
            "model.fixup": fixup,
            "model.skipinit": skipinit,
        }
        fake_max_lr_run(r, "E12d", cfg, lr)
    return "reproduced"
