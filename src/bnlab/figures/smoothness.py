"""E13 · Santurkar et al. Fig. 4 style: loss and gradient along the step, as bands over the step sizes,
against the training step; the effective β-smoothness as a line. Tables in, a matplotlib Figure out."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from bnlab.figures.basic import footnote

PANELS = (
    ("loss", "loss L(θ − s·g)", "loss landscape", False),
    ("grad_change", "‖∇L(θ − s·g) − ∇L(θ)‖", "gradient predictiveness", True),
)


def smoothness_figure(bands: pd.DataFrame, beta: pd.DataFrame, *, note: str | None = None) -> Figure:
    """bands: columns label, quantity (loss | grad_change), step, lo, hi (min and max over the step sizes);
    beta: columns label, step, value (max over s of ‖Δ∇L‖ / ‖s·g‖). One colour per label, shaded band
    between lo and hi with its edges drawn; β on a log axis. An empty table leaves its panel empty."""
    fig = Figure(figsize=(10.0, 3.6), layout="constrained")  # drawn at report width
    axes = fig.subplots(1, 3)
    labels = list(dict.fromkeys([*bands.get("label", []), *beta.get("label", [])]))
    colours = {lab: f"C{i}" for i, lab in enumerate(labels)}
    for ax, (quantity, ylabel, title, log) in zip(axes, PANELS):
        t = bands[bands["quantity"] == quantity] if len(bands) else bands
        for lab, g in t.groupby("label", sort=False) if len(t) else []:
            g = g.sort_values("step")
            lo, hi = g["lo"].to_numpy(float), g["hi"].to_numpy(float)
            ax.fill_between(g["step"], lo, hi, color=colours[lab], alpha=0.3, linewidth=0)
            ax.plot(g["step"], lo, color=colours[lab], lw=0.8)
            ax.plot(g["step"], hi, color=colours[lab], lw=0.8, label=str(lab))
        if log and len(t) and np.all(t[["lo", "hi"]].to_numpy(float) > 0):
            ax.set_yscale("log")
        ax.set_xlabel("training step")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
    ax = axes[2]
    for lab, g in beta.groupby("label", sort=False) if len(beta) else []:
        g = g.sort_values("step")
        ax.plot(g["step"], g["value"].to_numpy(float), "o-", color=colours[lab], ms=3, label=str(lab))
    if len(beta) and np.all(beta["value"].to_numpy(float) > 0):
        ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel("max_s ‖Δ∇L‖ / ‖s·g‖")
    ax.set_title("effective β-smoothness")
    handles: dict[str, object] = {}
    for a in axes:
        for h, lab in zip(*a.get_legend_handles_labels()):
            handles.setdefault(lab, h)
        if not a.get_lines():
            a.text(0.5, 0.5, "no data", ha="center", va="center", transform=a.transAxes, color="0.4")
    if handles:
        fig.legend(list(handles.values()), list(handles), loc="outside lower center", ncols=3, fontsize=8)
    footnote(fig, note)
    return fig
