"""E12d · reviewers: do orthogonal / delta-orthogonal init (Xiao et al. 2018), Fixup or SkipInit let an
unnormalized ResNet take larger learning rates?

Reads the max_lr runs per init arm: the spec's zipped grid axis model.norm + model.init.conv + model.fixup +
model.skipinit; the reference arm is the paper's plain Xavier init without BN, and BN's arm (Xavier) measures
the gap an init could close: the rule counts only where BN's max is >= 10x no BN's (`bn_over_nobn_max_lr`)."""

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
ARM = ("model.norm", "model.init.conv", "model.fixup", "model.skipinit")
Arm = tuple[str, str, bool, bool]  # (norm, conv init, fixup, skipinit)


def arm_key(norm: str, conv: str, fixup: bool, skipinit: bool) -> str:
    """The quantity key of one arm: max_lr_bn_<conv init> with BN; without: max_lr_fixup, max_lr_skipinit,
    else max_lr_<conv init>."""
    if norm != "none":
        return f"max_lr_bn_{conv}"
    return "max_lr_" + ("fixup" if fixup else "skipinit" if skipinit else conv)


def arms(runs: RunSet, spec: Spec) -> list[Arm]:
    """The spec's arms under the runs' profile: (norm, conv init, fixup, skipinit)."""
    cols = [grid_values(spec, k, runs.profile) for k in ARM]
    return [(str(n), str(c), bool(f), bool(s)) for n, c, f, s in zip(*cols)]


def arm_rows(t: pd.DataFrame, norm: str, conv: str, fixup: bool, skipinit: bool) -> pd.DataFrame:
    return t[
        (t["model.norm"] == norm)
        & (t["model.init.conv"] == conv)
        & (t["model.fixup"].astype(bool) == fixup)
        & (t["model.skipinit"].astype(bool) == skipinit)
    ]


def quantities(runs: RunSet, spec: Spec) -> dict[str, float]:
    grid = arms(runs, spec)
    q = {"best_other_init_over_xavier_max_lr": NAN, "bn_over_nobn_max_lr": NAN}
    q |= {arm_key(*a): NAN for a in grid}
    t = max_lr_table(runs)
    if not len(t):
        return q
    nobn = t[t["model.norm"] == "none"]
    base = arm_rows(nobn, "none", PAPER_INIT, False, False)
    others = nobn.drop(base.index)
    best = max((geo_mean_lr(others.loc[[i]]) for i in others.index), default=NAN)
    q["best_other_init_over_xavier_max_lr"] = ratio(best, geo_mean_lr(base))
    bn = arm_rows(t, "batch", PAPER_INIT, False, False)
    q["bn_over_nobn_max_lr"] = ratio(geo_mean_lr(bn), geo_mean_lr(base))
    if not len(bn):
        runs.note(f"no max_lr run of BN at {PAPER_INIT} init: the BN / no-BN gap is not measured")
    q |= arm_max_lrs(runs, t, {arm_key(*a): arm_rows(t, *a) for a in grid})
    return q


def init_zoo(runs: RunSet, spec: Spec) -> Figure:
    """E12d: largest stable lr of the unnormalized net per initialization, beside BN's (Xavier)."""
    return lr_bar_panel(runs, "largest stable lr per init (no BN; BN's reference)")


FIGURES = {"init_zoo": init_zoo}


def write_fake(
    root: Path,
    profile: str,
    *,
    xavier: float = 1e-3,
    others: tuple[float, float] = (3e-3, 2e-2),
    bn: float | None = 1.0,
) -> None:
    """Synthetic E12d runs at depth 56: no BN stable to `xavier` (Xavier), `others` (orthogonal, Fixup); BN
    (Xavier) to `bn` (None: no BN arm)."""
    r = FakeRoot(root, profile)
    arms: list[tuple[Arm, float | None]] = [
        (("none", PAPER_INIT, False, False), xavier),
        (("none", "orthogonal", False, False), others[0]),
        (("none", "kaiming_fan_in", True, False), others[1]),
        (("batch", PAPER_INIT, False, False), bn),
    ]
    for (norm, conv, fixup, skipinit), lr in arms:
        if lr is None:
            continue
        cfg = {
            "model.depth": 56,
            "model.norm": norm,
            "model.init.conv": conv,
            "model.fixup": fixup,
            "model.skipinit": skipinit,
        }
        fake_max_lr_run(r, "E12d", cfg, lr)


def fake_runs(root: Path, profile: str) -> str:
    """No BN: Xavier stable to lr 1e-3, orthogonal to 3e-3, Fixup to 2e-2 (20x Xavier); BN (Xavier) to 1
    (a 1000x gap): reproduced."""
    write_fake(root, profile)
    return "reproduced"
