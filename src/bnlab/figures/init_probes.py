"""Figures of the probes at initialization: probe tables/arrays in (one per label, e.g. {"BN": …,
"no BN": …}), a matplotlib Figure out. No torch, no pyplot state.

- `gradient_histograms`     Fig. 2: histogram of one layer's gradient entries per label, side by side, own axes.
- `kernel_alignment_bars`   Table 1 as bars: sum_abs / abs_sum per layer, one panel per reduction, log scale.
- `depth_profile`           Fig. 5: log10 |channel mean| and log10 channel std vs depth, ± spread over channels.
- `logit_gradient_heatmaps` Fig. 6: ∂L/∂z, images × classes, per label (own symmetric colour scale).
- `normalized_spectra`      E9: σ_i² / Σσ² per layer and label, log scale.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from bnlab.errors import UserError

Arrays = Mapping[str, np.ndarray]


def _note(fig: Figure, note: str | None) -> None:
    if note:
        fig.text(0.5, 0.005, note, ha="center", va="bottom", fontsize=8, color="0.3")


def _key(arrays: Arrays, key: str, label: str) -> np.ndarray:
    if key not in arrays:
        raise UserError(f"{label!r} has no array {key!r}; pass the matching probe's arrays (load_probes)")
    return np.asarray(arrays[key])


def _rows(table: pd.DataFrame, probe: str, label: str) -> pd.DataFrame:
    t = table[table["probe"] == probe] if "probe" in table.columns else table
    if t.empty:
        raise UserError(f"{label!r} has no {probe} rows; pass that probe's table")
    return t


def _layer_label(t: pd.DataFrame) -> pd.Series:
    """Paper layer number where known, else the module name."""
    return t.apply(lambda r: str(r["paper_layer"]) if pd.notna(r["paper_layer"]) else str(r["layer"]), axis=1)


def gradient_histograms(
    arrays: Mapping[str, Arrays], layer: str, *, magnitude: bool = False, note: str | None = None
) -> Figure:
    """One panel per label (each with its own axes: BN and no-BN scales differ ~100×) of `layer`'s
    gradient-entry histogram from gradient_histogram's arrays; `magnitude=True` plots log10 |g| bins."""
    fig = Figure(figsize=(4.2 * len(arrays), 3.4), layout="constrained")
    axes = fig.subplots(1, len(arrays), squeeze=False)[0]
    kind = "log10" if magnitude else "hist"
    for ax, (label, arr) in zip(axes, arrays.items()):
        counts = _key(arr, f"{layer}/{kind}_counts", label)
        edges = _key(arr, f"{layer}/{kind}_edges", label)
        ax.stairs(counts, edges, fill=True, alpha=0.8)
        ax.set_title(f"{label}: {layer}")
        ax.set_xlabel("log10 |∂L/∂K|" if magnitude else "∂L/∂K")
        ax.set_ylabel("count")
        if not magnitude:
            ax.set_yscale("symlog", linthresh=1)
    _note(fig, note)
    return fig


def kernel_alignment_bars(
    tables: Mapping[str, pd.DataFrame],
    *,
    reduces: Sequence[str] = ("spatial", "batch", "all"),
    note: str | None = None,
) -> Figure:
    """Table 1 as a bar chart: per layer, ratio = Σ|d| / Σ|Σ d| for each label, one panel per reduction."""
    fig = Figure(figsize=(5.0 * len(reduces), 3.6), layout="constrained")
    axes = fig.subplots(1, len(reduces), squeeze=False)[0]
    width = 0.8 / max(len(tables), 1)
    for ax, red in zip(axes, reduces):
        for k, (label, table) in enumerate(tables.items()):
            t = _rows(table, "kernel_alignment", label)
            t = t[(t["reduce"] == red) & (t["metric"] == "ratio")]
            names = list(_layer_label(t))
            pos = np.arange(len(names))
            ax.bar(pos + k * width, t["value"].to_numpy(), width=width, label=label)
            ax.set_xticks(pos + width * (len(tables) - 1) / 2, names, rotation=90, fontsize=7)
        ax.set_yscale("log")
        ax.set_title(f"sum over {red}")
        ax.set_xlabel("layer")
        ax.set_ylabel("Σ|d| / Σ|Σ d|")
        ax.legend(fontsize=8)
    _note(fig, note)
    return fig


def depth_profile(tables: Mapping[str, pd.DataFrame], *, note: str | None = None) -> Figure:
    """activation_moments vs depth: log10 |channel mean| and log10 channel std averaged over channels, error
    bars = spread over channels; x = paper layer where known, else block index."""
    fig = Figure(figsize=(9.0, 3.6), layout="constrained")
    axes = fig.subplots(1, 2)
    xlabel = "paper layer (block output)"
    for label, table in tables.items():
        t = _rows(table, "activation_moments", label)
        wide = t.pivot_table(index="layer", columns="metric", values="value", sort=False)
        order = list(dict.fromkeys(t["layer"]))
        wide = wide.loc[order]
        paper = t.drop_duplicates("layer").set_index("layer")["paper_layer"].loc[order]
        if paper.notna().all():
            x = paper.to_numpy(dtype=float)
        else:
            x, xlabel = np.arange(len(order), dtype=float), "block output (index)"
        for ax, m in zip(axes, ("log10_abs_mean", "log10_std")):
            ax.errorbar(x, wide[m], yerr=wide[f"{m}_sd"], marker="o", ms=3, capsize=2, label=label)
    for ax, title in zip(axes, ("log10 |channel mean|", "log10 channel std")):
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.legend(fontsize=8)
    _note(fig, note)
    return fig


def logit_gradient_heatmaps(arrays: Mapping[str, Arrays], *, note: str | None = None) -> Figure:
    """∂L/∂z (images × classes) from output_bias's `dL_dz`, one panel per label, symmetric colour scale."""
    fig = Figure(figsize=(3.2 * len(arrays), 5.0), layout="constrained")
    axes = fig.subplots(1, len(arrays), squeeze=False)[0]
    for ax, (label, arr) in zip(axes, arrays.items()):
        dz = _key(arr, "dL_dz", label)
        lim = float(np.abs(dz).max()) or 1.0
        im = ax.imshow(dz, aspect="auto", cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
        ax.set_title(label)
        ax.set_xlabel("class")
        ax.set_ylabel("image")
        fig.colorbar(im, ax=ax, shrink=0.8, label="∂L/∂z")
    _note(fig, note)
    return fig


def normalized_spectra(
    arrays: Mapping[str, Arrays],
    layers: Sequence[str],
    *,
    matrix: str = "gradient",
    note: str | None = None,
) -> Figure:
    """gradient_spectrum: σ_i² / Σσ² against i for each layer (one panel each), one line per label."""
    if matrix not in ("gradient", "activation"):
        raise UserError(f"matrix must be 'gradient' or 'activation', not {matrix!r}")
    fig = Figure(figsize=(3.6 * len(layers), 3.4), layout="constrained")
    axes = fig.subplots(1, len(layers), squeeze=False)[0]
    for ax, layer in zip(axes, layers):
        for label, arr in arrays.items():
            s = _key(arr, f"{layer}/{matrix}_sv", label)
            share = s**2 / max(float(np.sum(s**2)), np.finfo(float).tiny)
            ax.plot(np.arange(1, len(s) + 1), share, marker=".", label=label)
        ax.set_yscale("log")
        ax.set_title(f"{matrix}: {layer}")
        ax.set_xlabel("index i")
        ax.set_ylabel("σ_i² / Σσ²")
        ax.legend(fontsize=8)
    _note(fig, note)
    return fig
