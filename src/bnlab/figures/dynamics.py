"""Figures of the training-dynamics probes: tables and arrays in (as `load_probes()` returns them), a
matplotlib Figure out. No torch, no pyplot state: each function builds its own Figure.

- `step_size_curves`   Fig. 3: relative minibatch loss r(η) against the step size, log-log.
- `channel_heatmaps`   Fig. 4: channel × % of the diverging step, |mean| and variance, log colour.
- `noise_vs_scale`     E2: measured SGD noise against α²/|B|, with the per-example bound.
- `lambda_lr_figure`   lr·λ_max against the stability limit 2(1+β) (`lambda_lr_axes` draws it on an axes).
- `geometry_figure`    E12e: lr·λ_max vs 2(1+β), input-independent gradient fraction, radial share.
- `loss_curves`        training loss against the step (e.g. a run that did not diverge, in place of Fig. 4).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.colors import ListedColormap, LogNorm
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from bnlab.errors import UserError
from bnlab.figures.basic import footnote

LONG = ("probe", "layer", "paper_layer", "metric", "value", "se")


def _need(table: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise UserError(f"{what} needs table columns {missing}; pass the probe's rows (load_probes)")


def _groups(table: pd.DataFrame, column: str | None) -> list[tuple[object, pd.DataFrame]]:
    if column is None or column not in table.columns:
        return [(None, table)]
    return [(k, g) for k, g in table.groupby(column, sort=True, dropna=False)]


def _wide(table: pd.DataFrame, probe: str) -> pd.DataFrame:
    """One row per measurement (probe rows sharing every non-metric column), one column per metric."""
    _need(table, ["metric", "value"], probe)
    t = table[table["probe"] == probe] if "probe" in table.columns else table
    if t.empty:
        raise UserError(f"the table has no {probe} rows")
    ids = [c for c in t.columns if c not in LONG]
    if not ids:
        return pd.DataFrame([dict(zip(t["metric"], t["value"]))])
    wide = t.pivot_table(index=ids, columns="metric", values="value", aggfunc="first", dropna=False)
    if "se" in t.columns:
        se = t.pivot_table(index=ids, columns="metric", values="se", aggfunc="first", dropna=False)
        wide = wide.join(se.add_suffix("_se"))
    return wide.reset_index()


def step_size_curves(
    table: pd.DataFrame,
    *,
    panel: str | None = "label",
    hue: str | None = "step",
    direction: str = "gradient",
    note: str | None = None,
) -> Figure:
    """Fig. 3: r(η) = L_B(θ − ηg)/L_B(θ) per panel (e.g. BN / no BN), one line per `hue` (e.g. minibatch t).

    table: step_size_scan rows (columns metric, value, eta, direction, plus panel/hue columns if given).
    Infinite or NaN ratios (overflowed losses) are left out of the lines and counted in the legend.
    """
    _need(table, ["metric", "value", "eta"], "step_size_curves")
    t = table[table["metric"] == "ratio"]
    if "direction" in t.columns:
        t = t[t["direction"] == direction]
    if t.empty:
        raise UserError(f"no step_size_scan ratio rows for direction {direction!r}")
    panels = _groups(t, panel)
    fig = Figure(figsize=(4.2 * len(panels), 3.4), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (pkey, pt) in zip(axes, panels):
        for hkey, ht in _groups(pt, hue):
            ht = ht.sort_values("eta")
            ok = np.isfinite(ht["value"].to_numpy()) & (ht["value"].to_numpy() > 0)
            label = "" if hkey is None else f"{hue} {hkey}"
            if (~ok).any():
                label += f" ({int((~ok).sum())} overflowed)"
            ax.plot(ht["eta"][ok], ht["value"][ok], marker=".", label=label.strip() or None)
        ax.axhline(1.0, color="0.5", lw=0.8, ls="--")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("step size η")
        ax.set_ylabel("L_B(θ − ηd) / L_B(θ)")
        ax.set_title(f"{direction}" if pkey is None else f"{pkey} ({direction})")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    footnote(fig, note)
    return fig


def channel_heatmaps(
    arrays: Mapping[str, np.ndarray],
    *,
    layers: Sequence[str] | None = None,
    titles: Mapping[str, str] | None = None,
    note: str | None = None,
) -> Figure:
    """Fig. 4: for each layer, |channel mean| (top) and channel variance (bottom) as heatmaps, x = channel,
    y = % of the step (s·100), log colour scale. arrays: diverging_step's `s`, `mean/<layer>`, `var/<layer>`
    ([grid, channels]). Cells the log scale cannot show have colours of their own, named in a legend: exact
    zeros (dead channels: mean exactly 0) grey, non-finite values (overflow) red."""
    if "s" not in arrays:
        raise UserError("channel_heatmaps needs diverging_step arrays: 's', 'mean/<layer>', 'var/<layer>'")
    names = list(layers) if layers is not None else [k[5:] for k in arrays if k.startswith("mean/")]
    missing = [n for n in names if f"mean/{n}" not in arrays or f"var/{n}" not in arrays]
    if not names or missing:
        raise UserError(
            f"no mean/var arrays for layers {missing or names}; pick from the diverging_step arrays"
        )
    pct = np.asarray(arrays["s"], dtype=float) * 100
    fig = Figure(figsize=(3.6 * len(names) + 1.5, 6.0), layout="constrained")
    axes = fig.subplots(2, len(names), squeeze=False)
    seen: set[str] = set()
    for j, n in enumerate(names):
        for i, (key, label) in enumerate((("mean", "|channel mean|"), ("var", "channel variance"))):
            data = np.abs(np.asarray(arrays[f"{key}/{n}"], dtype=float))
            ax = axes[i, j]
            c = data.shape[1]
            extent = (-0.5, c - 0.5, pct[0], pct[-1])
            # cells the log colour scale cannot show get colours of their own, named in the legend
            special = np.zeros(data.shape)
            for code, (_, what, mask) in enumerate(_special_cells(data), start=1):
                special[mask] = code
                seen |= {what} if mask.any() else set()
            if special.any():
                ax.imshow(
                    np.ma.masked_equal(special, 0),
                    aspect="auto",
                    origin="lower",
                    interpolation="nearest",
                    cmap=ListedColormap([col for col, _, _ in SPECIAL_CELLS]),
                    vmin=0.5,
                    vmax=len(SPECIAL_CELLS) + 0.5,
                    extent=extent,
                )
            positive = data[np.isfinite(data) & (data > 0)]
            if positive.size:
                im = ax.imshow(
                    np.ma.masked_where(special > 0, data),
                    aspect="auto",
                    origin="lower",
                    interpolation="nearest",
                    norm=LogNorm(vmin=positive.min(), vmax=max(positive.max(), positive.min() * (1 + 1e-12))),
                    extent=extent,
                )
                fig.colorbar(im, ax=ax, label=label)
            else:  # nothing on the log scale: say what the panel shows
                ax.set_xlim(extent[0], extent[1])
                ax.set_ylim(extent[2], extent[3])
                what = "exactly 0" if np.isfinite(data).all() else "exactly 0 or non-finite"
                ax.text(0.5, 0.5, f"every {label}\n{what}", ha="center", va="center", transform=ax.transAxes)
            ax.set_xlabel("channel")
            ax.set_ylabel("% of step")
            ax.set_title((titles or {}).get(n, n) if i == 0 else "")
            ax.grid(False)
    handles = [Patch(color=col, label=what) for col, what, _ in SPECIAL_CELLS if what in seen]
    if handles:
        fig.legend(handles=handles, loc="outside right upper", fontsize=8)
    footnote(fig, note)
    return fig


# colour and legend text of the cells a log colour scale cannot show
SPECIAL_CELLS = (
    ("#b0b0b0", "exactly 0 (dead channel)", None),
    ("#d62728", "non-finite (overflow)", None),
)


def _special_cells(data: np.ndarray) -> list[tuple[str, str, np.ndarray]]:
    masks = (np.isfinite(data) & (data == 0), ~np.isfinite(data))
    return [(col, what, m) for (col, what, _), m in zip(SPECIAL_CELLS, masks)]


def noise_vs_scale(table: pd.DataFrame, *, hue: str | None = "label", note: str | None = None) -> Figure:
    """E2: measured noise E‖α(g_B − g)‖² against α²/|B| (error bars: standard errors), and the per-example
    bound α²C/|B| where measured ("no-BN, or frozen/running statistics only"), log-log, one colour per `hue`.

    table: sgd_noise rows of one or many runs/steps (the columns that tell measurements apart, e.g.
    run_id and step, are kept as they are)."""
    wide = _wide(table, "sgd_noise")
    _need(wide, ["alpha_sq_over_b", "noise"], "noise_vs_scale")
    fig = Figure(figsize=(4.8, 3.8), layout="constrained")
    ax = fig.subplots()
    for key, g in _groups(wide, hue):
        g = g.sort_values("alpha_sq_over_b")
        name = "" if key is None else f"{key} "
        err = g["noise_se"] if "noise_se" in g.columns else None
        line = ax.errorbar(
            g["alpha_sq_over_b"], g["noise"], yerr=err, fmt="o-", ms=4, label=f"{name}measured"
        )
        if "bound" in g.columns and g["bound"].notna().any():
            ax.plot(
                g["alpha_sq_over_b"],
                g["bound"],
                ls="--",
                marker="x",
                color=line[0].get_color(),
                label=f"{name}α²C/|B| (no-BN, or frozen/running statistics only)",
            )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("α² / |B|")
    ax.set_ylabel("E‖α(g_B − g)‖²")
    ax.legend(fontsize=7)
    footnote(fig, note)
    ax.set_title("SGD noise vs α²/|B|, and the bound α²C/|B|")
    return fig


def lambda_lr_figure(
    table: pd.DataFrame, *, x: str = "step", hue: str | None = "label", note: str | None = None
) -> Figure:
    """lr·λ_max (hessian_top_eig) against `x` (e.g. step), log y, with the stability limit 2(1+β) of each
    momentum in the data as a horizontal line: above it SGD with momentum β is unstable on a quadratic."""
    wide = _wide(table, "hessian_top_eig")
    _need(wide, ["lambda_lr", "limit"], "lambda_lr_figure")
    if x not in wide.columns:
        raise UserError(f"lambda_lr_figure: column {x!r} not in the hessian_top_eig rows; pass x=")
    fig = Figure(figsize=(4.8, 3.8), layout="constrained")
    lambda_lr_axes(fig.subplots(), wide, x=x, hue=hue)
    footnote(fig, note)
    return fig


def lambda_lr_axes(ax: Axes, wide: pd.DataFrame, *, x: str = "step", hue: str | None = "label") -> None:
    """Draw lr·λ_max against `x` on `ax` (log y), one line per `hue`, and each stability limit 2(1+β) as a
    horizontal line. wide: one row per measurement, columns `x`, lambda_lr, limit (+ `hue`); a non-positive
    lr·λ_max cannot be drawn on the log axis and is left out (the caller says so)."""
    for key, g in _groups(wide, hue):
        g = g[g["lambda_lr"] > 0].sort_values(x)
        ax.plot(g[x], g["lambda_lr"], marker="o", ms=4, label=None if key is None else str(key))
    for limit in sorted(set(wide["limit"].dropna())) if "limit" in wide.columns else []:
        ax.axhline(limit, color="0.3", ls="--", lw=0.9)
        ax.annotate(
            f"stability limit 2(1+β) = {limit:g}",
            (0.01, limit),
            xycoords=("axes fraction", "data"),
            fontsize=7,
            va="bottom",
        )
    ax.set_yscale("log")
    ax.set_xlabel(x)
    ax.set_ylabel("lr · λ_max")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)


def geometry_figure(
    curvature: pd.DataFrame,
    fraction: pd.DataFrame,
    radial: pd.DataFrame,
    *,
    hue: str = "label",
    note: str | None = None,
) -> Figure:
    """Three panels against the step, one line per `hue`: lr·λ_max with the stability limit 2(1+β)
    (curvature: columns step, lambda_lr, limit); the input-independent fraction ‖E g_B‖² / E‖g_B‖² of the
    gradient (fraction: step, value); the radial share of the mean gradient, median over layers (radial:
    step, value). An empty table leaves its panel empty."""
    fig = Figure(figsize=(10.0, 3.6), layout="constrained")  # drawn at report width: fonts stay readable
    ax_l, ax_f, ax_r = fig.subplots(1, 3)
    if len(curvature):
        lambda_lr_axes(ax_l, curvature, x="step", hue=hue)
    ax_l.set_xlabel("step")
    ax_l.set_ylabel("lr · λ_max")
    ax_l.set_title("curvature vs stability limit")
    panels = (
        (ax_f, fraction, "‖E g_B‖² / E‖g_B‖²", "input-independent gradient"),
        (ax_r, radial, "radial fraction (median over layers)", "radial share of the mean gradient"),
    )
    for ax, t, ylabel, title in panels:
        for key, g in _groups(t, hue) if len(t) else []:
            g = g.sort_values("step")
            ax.plot(g["step"], g["value"].to_numpy(float), "o-", label=None if key is None else str(key))
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.set_ylim(0, 1.05)
    # one legend for the three panels (the same labels in each), beside them, never on the data
    handles: dict[str, object] = {}
    for ax in (ax_l, ax_f, ax_r):
        if ax.get_legend() is not None:
            ax.get_legend().remove()
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
        if not ax.get_lines():
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes, color="0.4")
    if handles:
        fig.legend(list(handles.values()), list(handles), loc="outside right upper", fontsize=8)
    footnote(fig, note)
    return fig


def loss_curves(
    curves: Sequence[tuple[str, pd.DataFrame]], *, title: str = "training loss", note: str | None = None
) -> Figure:
    """Training loss against the step, log y, one line per (label, table with columns step and loss)."""
    fig = Figure(figsize=(6.0, 3.2), layout="constrained")
    ax = fig.subplots()
    for label, t in curves:
        ax.plot(t["step"], t["loss"], marker=".", label=label)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_title(title, fontsize=9)
    if ax.get_legend_handles_labels()[0]:
        ax.legend()
    footnote(fig, note)
    return fig
