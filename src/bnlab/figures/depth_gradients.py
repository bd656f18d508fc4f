"""Figures of gradient growth with depth at initialization (E17, Yang et al. 2019 Fig. 3 style): DataFrames in,
a matplotlib Figure out. No torch, no pyplot state, no file reading.

- `gradient_explosion`  (a) ln ||dL/dW_l|| against layer l, one line per configuration (mean over seeds, a
                        band of ± one standard deviation), the fitted layers shaded; (b) the growth rate per
                        layer against the batch size with ± 2 SE bars, one marker per width, and the
                        mean-field curve.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from bnlab.errors import UserError
from bnlab.figures.basic import footnote


def gradient_explosion(
    profiles: pd.DataFrame,
    rates: pd.DataFrame,
    theory: pd.DataFrame,
    *,
    fit_range: tuple[int, int] | None = None,
    note: str | None = None,
) -> Figure:
    """profiles: columns label, layer_index, log_grad_norm (one row per run and layer);
    rates: columns label, norm, width, batch_size, rate, se (one row per configuration);
    theory: columns batch_size, rate (the mean-field curve for BN)."""
    for df, cols, what in (
        (profiles, ("label", "layer_index", "log_grad_norm"), "profiles"),
        (rates, ("label", "norm", "width", "batch_size", "rate", "se"), "rates"),
    ):
        missing = [c for c in cols if c not in df.columns]
        if missing or df.empty:
            raise UserError(f"gradient_explosion needs {what} with columns {list(cols)}")
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    ax, bx = fig.subplots(1, 2)
    for label, g in profiles.groupby("label", sort=False):
        s = g.groupby("layer_index")["log_grad_norm"]
        m, sd = s.mean(), s.std().fillna(0)
        (line,) = ax.plot(m.index, m.to_numpy(), label=str(label))
        ax.fill_between(m.index, (m - sd).to_numpy(), (m + sd).to_numpy(), color=line.get_color(), alpha=0.2)
    if fit_range is not None:
        ax.axvspan(*fit_range, color="0.92", zorder=0, label="layers fitted")
    ax.set_xlabel("layer l (from the input)")
    ax.set_ylabel("ln ||dL/dW_l||")
    ax.set_title("(a) weight-gradient norm at initialization")
    ax.legend(fontsize=7)

    if len(theory):
        t = theory.sort_values("batch_size")
        bx.plot(t["batch_size"], t["rate"], "k-", lw=1, label="mean field (BN)")
        bx.axhline(0.5 * np.log(np.pi / (np.pi - 1)), color="k", ls=":", lw=1, label="B → ∞: ln(π/(π-1))/2")
    bx.axhline(0, color="0.5", lw=0.8)
    markers = "osD^v<>"
    for i, ((norm, width), g) in enumerate(rates.groupby(["norm", "width"], sort=True)):
        g = g.sort_values("batch_size")
        bx.errorbar(
            g["batch_size"],
            g["rate"],
            yerr=2 * g["se"].fillna(0),
            fmt=markers[i % len(markers)],
            capsize=3,
            label=f"{'BN' if norm != 'none' else 'no BN'}, width {int(width)}",
        )
    bx.set_xscale("log", base=2)
    bx.set_xlabel("batch size B")
    bx.set_ylabel("growth rate of ln ||dL/dW|| per layer")
    bx.set_title("(b) measured rate (± 2 SE over seeds) vs mean field")
    bx.legend(fontsize=7)
    footnote(fig, note)
    return fig
