"""A generic figure for any probe table: every metric against the layer order (one panel per metric)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.figure import Figure


def metrics_by_layer(table: pd.DataFrame, title: str = "", max_panels: int = 12) -> Figure:
    df = table[pd.to_numeric(table["value"], errors="coerce").notna()].copy()
    metrics = list(dict.fromkeys(df["metric"]))[:max_panels] or ["(no finite values)"]
    cols = min(3, len(metrics))
    rows = math.ceil(len(metrics) / cols)
    fig = Figure(figsize=(4.2 * cols, 2.8 * rows), layout="constrained")
    layers = list(dict.fromkeys(df["layer"]))
    for i, metric in enumerate(metrics):
        ax = fig.add_subplot(rows, cols, i + 1)
        sub = df[df["metric"] == metric]
        if sub.empty:
            ax.text(0.5, 0.5, "no finite values", ha="center", va="center", transform=ax.transAxes)
            continue
        g = sub.groupby("layer", sort=False)["value"].mean().reindex(layers).dropna()
        ax.plot(np.arange(len(g)), g.to_numpy(dtype=float), marker="o", ms=3)
        ax.set_title(metric, fontsize=9)
        ax.set_xticks(np.arange(len(g)))
        ax.set_xticklabels(g.index, rotation=90, fontsize=6)
    excluded = len(table) - len(df)
    fig.suptitle(title + (f"  ({excluded} non-finite rows excluded)" if excluded else ""), fontsize=10)
    return fig
