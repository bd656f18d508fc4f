"""Accuracy against training progress for (norm, lr) arms: one colour per learning rate, one line style per
normalization (solid BN, dashed without), every run drawn thin and the arm's mean thick (E1 / Fig. 1); the
final accuracies as bars with error bars; the learning rates against the measured stability thresholds."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from bnlab.figures.basic import mean_std_curve

STYLE = {"batch": "-", "none": "--"}
NAME = {"batch": "BN", "none": "no BN"}


@dataclass
class Arm:
    """One (norm, lr) arm: per run, (% of training, accuracy %) curves of two splits; diverged runs' ends."""

    norm: str
    lr: float
    train: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    test: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    diverged: list[tuple[float, float]] = field(default_factory=list)


def _colours(lrs: Sequence[float]) -> dict[float, str]:
    return {lr: f"C{i % 10}" for i, lr in enumerate(sorted(set(lrs), reverse=True))}


def accuracy_curves(arms: Sequence[Arm], splits: tuple[str, str] = ("train_eval", "test")) -> Figure:
    colour = _colours([a.lr for a in arms])
    fig = Figure(figsize=(11.0, 4.2), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    for ax, which, split in zip(axes, ("train", "test"), splits):
        for a in arms:
            curves = getattr(a, which)
            if not curves:
                continue
            c, ls = colour[a.lr], STYLE.get(a.norm, ":")
            for x, y in curves:
                ax.plot(x, y, color=c, ls=ls, lw=0.7, alpha=0.45)
            gx, gm, _ = mean_std_curve(curves)
            ax.plot(gx, gm, color=c, ls=ls, lw=2.0)
            for dx, dy in a.diverged:
                ax.plot([dx], [dy], "x", color=c, ms=8, mew=2)
        ax.set_title(f"{which} accuracy ({split})")
        ax.set_xlabel("% of training")
        ax.set_xlim(0, 100)
    axes[0].set_ylabel("accuracy (%)")
    handles = [Line2D([], [], color=colour[lr], lw=2, label=f"lr {lr:g}") for lr in colour]
    handles += [Line2D([], [], color="0.3", ls=STYLE[n], lw=2, label=NAME[n]) for n in STYLE]
    handles += [Line2D([], [], color="0.3", ls="", marker="x", mew=2, label="diverged")]
    fig.legend(handles=handles, loc="outside right center", fontsize=8, title="thin: runs; thick: mean")
    return fig


def final_bars(rows: Sequence[tuple[str, float, float, int, int]], title: str) -> Figure:
    """rows: (label, mean %, std, n runs, n diverged); diverged arms hatched, not averaged."""
    fig = Figure(figsize=(max(5.0, 1.1 * len(rows) + 2), 4.2), layout="constrained")
    ax = fig.subplots()
    for i, (_, avg, std, n, ndiv) in enumerate(rows):
        if n:
            ax.bar(i, avg, yerr=std if n > 1 else None, color=f"C{i % 10}", capsize=3)
            ax.text(i, avg + 1, f"{avg:.1f}%\n(n={n})", ha="center", va="bottom", fontsize=7)
        if ndiv:
            ax.bar(i, 5, color="none", edgecolor="0.3", hatch="xx")
            ax.text(i, 6, f"{ndiv} diverged", ha="center", va="bottom", fontsize=7, color="0.3")
    ax.set_xticks(np.arange(len(rows)), [r[0] for r in rows], rotation=30, ha="right")
    ax.set_xlabel("arm (normalization, learning rate)")
    ax.set_ylabel("final test accuracy (%)")
    ax.set_ylim(0, 110)
    ax.set_title(title)
    return fig


def lr_design(th: dict[str, float], roles: dict[str, float], lrs: dict[str, Sequence[float]]) -> Figure:
    """Measured largest stable lr per norm (bars) and the training lrs per norm (markers, role labelled)."""
    fig = Figure(figsize=(6.5, 3.8), layout="constrained")
    ax = fig.subplots()
    norms = [n for n in ("batch", "none") if n in th or n in lrs]
    for i, n in enumerate(norms):
        if np.isfinite(th.get(n, np.nan)):
            ax.bar(i, th[n], color="0.85", edgecolor="0.4", width=0.5)
            ax.text(i, th[n] * 1.15, f"max stable {th[n]:.3g}", ha="center", fontsize=8)
        for lr in lrs.get(n, ()):
            ax.plot([i], [lr], "o", color="C0", ms=6)
            role = next((k for k, v in roles.items() if np.isfinite(v) and np.isclose(v, lr)), "")
            ax.text(i + 0.28, lr, f"{lr:g} {role}", va="center", fontsize=8)
    ax.set_yscale("log")
    ax.set_xticks(range(len(norms)), [NAME.get(n, n) for n in norms])
    ax.set_xlim(-0.6, len(norms) - 0.1)
    ax.set_xlabel("normalization")
    ax.set_ylabel("learning rate")
    ax.set_title("training lrs against the measured largest stable lr")
    return fig
