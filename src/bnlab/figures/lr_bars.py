"""Bars of the largest stable learning rate per arm (one bar per row of a max-lr table), bracketed up to the
smallest unstable lr; censored searches marked. Tables in, Figure out: no run reading here (the analyses
build the table with bnlab.analyses.max_lr_table)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure


def lr_bars(
    ax: Axes,
    table: pd.DataFrame,
    labels: Sequence[str],
    colors: Sequence[str] | None = None,
    xlabel: str = "arm",
) -> list[str]:
    """One bar per row of `table` (columns max_stable_lr, min_unstable_lr, censored) on a log axis, named by
    `labels`, the ▼ marker explained in a legend; returns the caption notes (arms without a stable lr,
    censored searches)."""
    notes: list[str] = []
    for i, (label, (_, row)) in enumerate(zip(labels, table.iterrows())):
        lo, hi = row["max_stable_lr"], row["min_unstable_lr"]
        c = colors[i] if colors else f"C{i % 8}"
        stable = bool(np.isfinite(lo) and lo > 0)
        if stable:
            ax.bar(i, lo, color=c)
            ax.text(i, lo, f"{lo:.2g}", ha="center", va="bottom", fontsize=7)
        else:
            notes.append(f"{label}: no stable lr found in the search range (max_stable_lr {lo})")
        if np.isfinite(hi) and hi > 0:
            ax.plot([i, i], [lo if stable else hi / 10, hi], color="0.2", lw=1)
            ax.plot([i], [hi], "v", color="0.2", ms=5)
        if row["censored"]:
            ax.annotate(
                "censored",
                (i, lo if stable else 1e-6),
                fontsize=6,
                ha="center",
                va="top",
                color="C3",
                xytext=(0, -3),
                textcoords="offset points",
            )
            notes.append(f"{label}: search censored at the end of its range (the bound is one-sided)")
    ax.set_yscale("log")
    ax.set_xticks(np.arange(len(labels)), list(labels), rotation=30, ha="right", fontsize=7)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("largest stable lr")
    ax.plot([], [], "v", color="0.2", ms=5, ls="", label="smallest unstable lr")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))  # beside the bars, never on them
    return notes


def lr_bar_figure(table: pd.DataFrame, labels: Sequence[str], title: str) -> tuple[Figure, list[str]]:
    """A figure of `lr_bars` alone, sized to the number of arms; (figure, caption notes)."""
    fig = Figure(figsize=(max(5.0, 0.9 * len(labels) + 2), 4.0), layout="constrained")
    ax = fig.subplots()
    notes = lr_bars(ax, table, labels)
    ax.set_title(title)
    return fig, notes
