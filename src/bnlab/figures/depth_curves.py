"""Per-block curves against depth, one line per label with a ±SE band, log y (E14 rank against depth,
E15 signal propagation plots after Brock, De & Smith 2021). A tidy table in, a matplotlib Figure out; no
torch, no pyplot state, no file reading."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from bnlab.errors import UserError

STYLES = ("-", "--", ":", "-.")


def depth_curves(
    t: pd.DataFrame,
    panels: Sequence[tuple[str, str, str]],
    *,
    rows: Sequence[str] | None = None,
    suptitle: str = "",
    xlabel: str = "block (from the input)",
    note: str | None = None,
) -> Figure:
    """`t`: columns `label`, `block` (int), `metric`, `mean`, `se` (and `row` when `rows` is given: one row of
    panels per value). `panels`: (metric, title, y label) per column. Each label is one line (mean) with a
    ±1 SE band; a label's colour is the same in every panel; labels that share the text before " · " share
    a colour and differ by line style. Non-positive means are left out (log y)."""
    need = {"label", "block", "metric", "mean", "se"} | ({"row"} if rows else set())
    missing = need - set(t.columns)
    if missing:
        raise UserError(f"depth_curves needs columns {sorted(missing)}")
    if t.empty:
        raise UserError("depth_curves: no rows to draw")
    row_keys = list(rows) if rows else [None]
    labels = list(dict.fromkeys(t["label"]))
    heads = list(dict.fromkeys(lab.split(" · ")[0] for lab in labels))
    tails = list(dict.fromkeys(lab.split(" · ", 1)[1] if " · " in lab else "" for lab in labels))
    fig = Figure(figsize=(4.2 * len(panels), 3.4 * len(row_keys) + 0.6), layout="constrained")
    axes = np.atleast_2d(fig.subplots(len(row_keys), len(panels), squeeze=False))
    for i, rk in enumerate(row_keys):
        sub = t if rk is None else t[t["row"] == rk]
        for j, (metric, title, ylabel) in enumerate(panels):
            ax = axes[i, j]
            m = sub[sub["metric"] == metric]
            drawn = 0
            for lab in labels:
                c = m[(m["label"] == lab) & (m["mean"] > 0)].sort_values("block")
                if c.empty:
                    continue
                head = lab.split(" · ")[0]
                tail = lab.split(" · ", 1)[1] if " · " in lab else ""
                colour = f"C{heads.index(head) % 10}"
                style = STYLES[tails.index(tail) % len(STYLES)]
                x, y, se = c["block"].to_numpy(), c["mean"].to_numpy(), c["se"].fillna(0).to_numpy()
                ax.plot(x, y, style, color=colour, label=lab, lw=1.4)
                lo = np.where(y - se > 0, y - se, y)
                ax.fill_between(x, lo, y + se, color=colour, alpha=0.2, lw=0)
                drawn += 1
            if drawn:
                ax.set_yscale("log")
                ax.legend(fontsize=7)
            else:
                ax.text(
                    0.5, 0.5, "no positive values to draw", ha="center", va="center", transform=ax.transAxes
                )
            ax.set_title(title if rk is None else f"{rk}: {title}", fontsize=9)
            ax.set_xlabel(xlabel)
            ax.set_ylabel(ylabel)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    if note:
        fig.supxlabel(note, fontsize=7, color="0.3")
    return fig
