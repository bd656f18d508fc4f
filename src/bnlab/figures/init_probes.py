"""Figures of the probes at initialization: probe tables/arrays in (one per label, e.g. {"BN": …,
"no BN": …}), a matplotlib Figure out. No torch, no pyplot state, no file reading.

- `gradient_histograms`     Fig. 2: histogram of one layer's gradient entries per label, each on its own axes.
- `kernel_alignment_bars`   Table 1 as bars: sum_abs / abs_sum per layer, one panel per reduction, log scale.
- `depth_profile`           Fig. 5: log10 |channel mean| and log10 channel std vs depth, ± spread over channels.
- `logit_gradient_heatmaps` Fig. 6: ∂L/∂z, images × classes, per label (own symmetric colour scale), with the
                            top-class share per label as bars when given.
- `normalized_spectra`      E9: σ_i² / Σσ² per layer and label, log scale.
- `variance_by_layer`       E9b: intra-layer and intra-minibatch gradient variance per layer and label.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from bnlab.errors import UserError
from bnlab.figures.basic import footnote

Arrays = Mapping[str, np.ndarray]


def _log_panel(ax: Axes, title: str, xlabel: str, ylabel: str) -> None:
    """Finish a panel of one line or bar series per label: log y, title, axis labels, legend."""
    ax.set_yscale("log")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)


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


def rebinned(parts: Sequence[Arrays], layer: str, kind: str = "hist") -> tuple[np.ndarray, np.ndarray]:
    """(counts, edges) of `layer`'s histogram pooled over several minibatches' arrays (each with its own
    edges) on one common grid: each bin's count is placed at its centre (approximate by at most half a bin)."""
    have = [p for p in parts if f"{layer}/{kind}_counts" in p and f"{layer}/{kind}_edges" in p]
    if not have:
        raise UserError(f"no {kind} histogram arrays for layer {layer}; pass gradient_histogram's arrays")
    if len(have) == 1:
        return np.asarray(have[0][f"{layer}/{kind}_counts"], float), np.asarray(
            have[0][f"{layer}/{kind}_edges"], float
        )
    centres = [(p[f"{layer}/{kind}_edges"][:-1] + p[f"{layer}/{kind}_edges"][1:]) / 2 for p in have]
    counts = [np.asarray(p[f"{layer}/{kind}_counts"], float) for p in have]
    allc = np.concatenate(centres)
    edges = np.linspace(allc.min(), allc.max(), len(centres[0]) + 1)
    hist, _ = np.histogram(allc, bins=edges, weights=np.concatenate(counts))
    return hist, edges


def gradient_histograms(
    arrays: Mapping[str, Arrays | Sequence[Arrays]],
    layer: str | Mapping[str, str],
    *,
    magnitude: bool = False,
    cells: Mapping[str, tuple[int, int]] | None = None,
    titles: Mapping[str, str] | None = None,
    text: Mapping[str, str] | None = None,
    colors: Mapping[str, str] | None = None,
    note: str | None = None,
) -> Figure:
    """Fig. 2: one panel per label (each with its own axes: BN and no-BN scales differ ~100×) of `layer`'s
    gradient-entry histogram from gradient_histogram's arrays; `magnitude=True` plots log10 |g| bins.

    A label's value may be several minibatches' arrays (a sequence): re-binned onto one grid (`rebinned`);
    an empty sequence draws "no histogram arrays". `layer`: one module name, or one per label. `cells`:
    label -> (row, column) of its panel (default: one row); `titles` (default "label: layer"), `text` (a
    corner annotation) and `colors`: per label."""
    labels = list(arrays)
    where = dict(cells) if cells is not None else {lab: (0, i) for i, lab in enumerate(labels)}
    nrows = 1 + max((r for r, _ in where.values()), default=0)
    ncols = 1 + max((c for _, c in where.values()), default=0)
    fig = Figure(figsize=(4.2 * ncols, 3.4 if nrows == 1 else 2.9 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    kind = "log10" if magnitude else "hist"
    for label in labels:
        ax = axes[where[label]]
        lay = layer if isinstance(layer, str) else layer[label]
        arr = arrays[label]
        parts = [arr] if isinstance(arr, Mapping) else list(arr)
        if not parts:
            ax.text(0.5, 0.5, "no histogram arrays", ha="center", transform=ax.transAxes)
            continue
        for p in parts:
            _key(p, f"{lay}/{kind}_counts", label)
        counts, edges = rebinned(parts, lay, kind)
        ax.stairs(counts, edges, fill=True, alpha=0.85, color=(colors or {}).get(label))
        ax.set_title((titles or {}).get(label, f"{label}: {lay}"), fontsize=8)
        if label in (text or {}):
            ax.text(0.98, 0.95, (text or {})[label], ha="right", va="top", transform=ax.transAxes, fontsize=7)
        ax.set_xlabel("log10 |∂L/∂K|" if magnitude else "∂L/∂K")
        ax.set_ylabel("count")
        if not magnitude:
            ax.set_yscale("symlog", linthresh=1)
    used = set(where.values())
    for idx in np.ndindex(nrows, ncols):
        if idx not in used:
            axes[idx].axis("off")
    footnote(fig, note)
    return fig


def kernel_alignment_bars(
    tables: Mapping[str, pd.DataFrame],
    *,
    reduces: Sequence[str] = ("spatial", "batch", "all"),
    note: str | None = None,
) -> Figure:
    """Table 1 as a bar chart: per layer, ratio = Σ|d| / Σ|Σ d| for each label, one panel per reduction.

    Rows of several minibatches (a `batch` column) or runs of one label are averaged per layer, the error bar
    spanning their range; one x group per layer (paper layer where known), one colour per label, one legend
    beside the panels."""
    fig = Figure(figsize=(3.3 * len(reduces) + 1.8, 3.3), layout="constrained")
    axes = fig.subplots(1, len(reduces), squeeze=False)[0]
    width = 0.8 / max(len(tables), 1)
    counts = set()
    for ax, red in zip(axes, reduces):
        per_label = {}
        for label, table in tables.items():
            t = _rows(table, "kernel_alignment", label)
            t = t[(t["reduce"] == red) & (t["metric"] == "ratio")]
            v = t.assign(x=_layer_label(t).to_numpy()).groupby("x", sort=False)["value"]
            per_label[label] = (v.mean(), v.min(), v.max())
            counts |= set(v.size().tolist())
        names = list(dict.fromkeys(n for m, _, _ in per_label.values() for n in m.index))
        pos = np.arange(len(names))
        for k, (label, (m, lo, hi)) in enumerate(per_label.items()):
            m, lo, hi = (a.reindex(names).to_numpy(float) for a in (m, lo, hi))
            err = np.vstack([m - lo, hi - m]) if max(counts) > 1 else None
            ax.bar(pos + k * width, m, width=width, yerr=err, capsize=2, color=f"C{k % 8}", label=label)
        ax.set_xticks(pos + width * (len(tables) - 1) / 2, names)
        ax.set_yscale("log")
        ax.set_title(f"sum over {red}")
        ax.set_xlabel("paper layer" if all(n.isdigit() for n in names) else "layer")
        ax.set_ylabel("Σ|d| / Σ|Σ d|")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right upper", fontsize=8)
    if max(counts, default=1) > 1:
        fig.suptitle(
            f"mean over {max(counts)} minibatches or runs per label; error bars: their range", fontsize=9
        )
    footnote(fig, note)
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
        ax.set_ylabel(f"{title} (mean over channels ± sd)")
        ax.legend(fontsize=8)
    footnote(fig, note)
    return fig


def logit_gradient_heatmaps(
    arrays: Mapping[str, Arrays],
    *,
    top_class_share: Mapping[str, float] | None = None,
    note: str | None = None,
) -> Figure:
    """Fig. 6: ∂L/∂z (images × classes) from output_bias's `dL_dz`, one panel per label, symmetric colour
    scale; with `top_class_share` (label -> share of images predicted as the most frequent class) a bar
    panel underneath, with the uniform share 1/K (K = classes) dashed."""
    if not arrays and not top_class_share:
        raise UserError("nothing to draw: pass output_bias's arrays (dL_dz) or top-class shares")
    n = max(len(arrays), 1)
    shares = dict(top_class_share or {})
    fig = Figure(figsize=(max(8.0, 2.0 * n), 7.0) if shares else (3.2 * n, 5.0), layout="constrained")
    gs = fig.add_gridspec(2 if shares else 1, n, height_ratios=[2.2, 1.0] if shares else None)
    heat = [fig.add_subplot(gs[0, i]) for i in range(n)]
    classes = None
    for ax, (label, arr) in zip(heat, arrays.items()):
        dz = _key(arr, "dL_dz", label)
        classes = dz.shape[1] if dz.ndim == 2 else classes
        lim = (float(np.nanmax(np.abs(dz))) if np.isfinite(dz).any() else 0.0) or 1.0
        im = ax.imshow(dz, aspect="auto", cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
        ax.set_title(label.replace(", ", "\n"), fontsize=8)
        ax.set_xlabel("class")
        ax.grid(False)
        fig.colorbar(im, ax=ax, shrink=0.8, label="∂L/∂z")
    for ax in heat:
        ax.set_ylabel("image")
    if shares:
        ax = fig.add_subplot(gs[1, :])
        pos = np.arange(len(shares))
        ax.bar(pos, list(shares.values()), color=[f"C{i % 8}" for i in range(len(shares))])
        ax.set_xticks(pos, list(shares), rotation=20, ha="right", fontsize=7)
        if classes:  # a legend entry, not a label on the plot, so no bar can hide it
            ax.axhline(1 / classes, color="0.4", ls="--", lw=0.8, label=f"uniform share 1/K (K = {classes})")
            ax.legend(loc="upper left", fontsize=7)  # in the headroom above 1, where no bar reaches
        ax.set_ylim(0, 1.3)
        ax.set_yticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
        ax.set_xlabel("variant")
        ax.set_ylabel("top-class share")
        ax.set_title("share of the images predicted as the most frequent class", fontsize=9)
    footnote(fig, note)
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
        _log_panel(ax, f"{matrix}: {layer}", "index i", "σ_i² / Σσ²")
    footnote(fig, note)
    return fig


def variance_by_layer(tables: Mapping[str, pd.DataFrame], *, note: str | None = None) -> Figure:
    """gradient_variance: variance across a layer's entries and across the minibatch, per layer (x = paper
    layer where known, else the layer's index), one line per label, log y. Rows with values <= 0 or not
    finite are the caller's to drop (a log axis)."""
    fig = Figure(figsize=(9.0, 3.6), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    titles = {
        "intra_layer": "variance across a layer's entries",
        "intra_batch": "variance across the minibatch",
    }
    for ax, (metric, title) in zip(axes, titles.items()):
        for label, table in tables.items():
            t = _rows(table, "gradient_variance", label)
            g = t[t["metric"] == metric]
            known = "paper_layer" in g.columns and g["paper_layer"].notna().all()
            x = g["paper_layer"].astype(float).to_numpy() if known else np.arange(len(g))
            ax.plot(x, g["value"].to_numpy(float), marker="o", label=str(label))
        ax.set_yscale("log")
        ax.set_xlabel("paper layer")
        ax.set_title(title)
        ax.legend()
    axes[0].set_ylabel("gradient variance")
    footnote(fig, note)
    return fig
