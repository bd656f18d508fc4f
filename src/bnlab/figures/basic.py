"""Small pieces every report figure uses: a figure that only says something, a footnote, mean ± std of curves."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure


def message_figure(text: str, size: tuple[float, float] = (6.0, 2.0)) -> Figure:
    """A figure that only says `text` (where there is nothing else to draw)."""
    fig = Figure(figsize=size, layout="constrained")
    ax = fig.subplots()
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True, fontsize=9)
    return fig


def footnote(fig: Figure, note: str | None) -> None:
    """Write `note` (nothing when empty or None) small and grey, centred at the bottom edge of `fig`."""
    if note:
        fig.text(0.5, 0.005, note, ha="center", va="bottom", fontsize=8, color="0.3")


def mean_std_curve(curves: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and std of several (x, y) curves on the union of their x, each interpolated within its range."""
    grid = np.unique(np.concatenate([c[0] for c in curves]))
    stack = np.vstack([np.interp(grid, x, y, left=np.nan, right=np.nan) for x, y in curves])
    with np.errstate(all="ignore"):
        count = np.isfinite(stack).sum(0)
        mean = np.nanmean(np.where(np.isfinite(stack), stack, np.nan), axis=0)
        std = np.nanstd(np.where(np.isfinite(stack), stack, np.nan), axis=0)
    ok = count > 0
    return grid[ok], mean[ok], std[ok]
