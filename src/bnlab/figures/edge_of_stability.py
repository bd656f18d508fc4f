"""Edge-of-stability figure (E16, Cohen et al. 2021 Fig. 1 style): DataFrames in, a matplotlib Figure out.
No torch, no pyplot state, no file reading.

- `edge_of_stability`  one column per group (e.g. BN / no BN): top, the full-batch training loss against the
                       step, one line per learning rate η; bottom, λ_max against the step with 2/η dashed in
                       the same colour.
"""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from bnlab.errors import UserError
from bnlab.figures.basic import footnote


def edge_of_stability(loss: pd.DataFrame, sharpness: pd.DataFrame, *, note: str | None = None) -> Figure:
    """loss: columns group, lr, step, loss; sharpness: columns group, lr, step, lambda_max, threshold (2/η)."""
    for df, cols, what in (
        (loss, ("group", "lr", "step", "loss"), "loss"),
        (sharpness, ("group", "lr", "step", "lambda_max", "threshold"), "sharpness"),
    ):
        missing = [c for c in cols if c not in df.columns]
        if missing or df.empty:
            raise UserError(f"edge_of_stability needs {what} rows with columns {list(cols)}")
    groups = list(dict.fromkeys([*loss["group"], *sharpness["group"]]))
    fig = Figure(figsize=(5.2 * len(groups), 6.4), layout="constrained")
    axes = fig.subplots(2, len(groups), squeeze=False, sharex="col")
    lrs = sorted({float(v) for v in sharpness["lr"]} | {float(v) for v in loss["lr"]})
    colors = {lr: f"C{i}" for i, lr in enumerate(lrs)}
    for j, g in enumerate(groups):
        top, bottom = axes[0, j], axes[1, j]
        for lr, d in loss[loss["group"] == g].groupby("lr"):
            d = d.sort_values("step")
            top.plot(d["step"], d["loss"], color=colors[float(lr)], lw=1, label=f"η = {lr:g}")
        for lr, d in sharpness[sharpness["group"] == g].groupby("lr"):
            d = d.sort_values("step")
            c = colors[float(lr)]
            bottom.plot(d["step"], d["lambda_max"], "o-", color=c, ms=3, lw=1, label=f"η = {lr:g}")
            bottom.axhline(float(d["threshold"].iloc[0]), color=c, ls="--", lw=1)
        top.set_yscale("log")
        top.set_title(f"{g}: full-batch training loss")
        top.set_ylabel("train loss")
        top.legend(fontsize=7)
        bottom.set_title(f"{g}: sharpness λ_max (dashed: 2/η)")
        bottom.set_xlabel("step (full-batch gradient descent)")
        bottom.set_ylabel("λ_max of the training loss")
        bottom.legend(fontsize=7)
    footnote(fig, note)
    return fig
