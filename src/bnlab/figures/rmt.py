"""Figures of E10 (random-matrix theory): tables in (bnlab.rmt.study / load_probes rows), a Figure out.

No torch, no pyplot state. The Theorem 1 curve is computed here from bnlab.rmt.theory (numpy only).

- `spectra_figure`       the paper's figure: histograms of squared singular values for m = 1, 3, 5 with
                         the Theorem 1 density; KS distance in each panel and in the caption.
- `universality_figure`  KS distance per entry law and m.
- `lyapunov_figure`      measured exponents against the real-Ginibre closed form.
- `condition_figure`     ln kappa vs depth: exact finite products, naive SVD, Lyapunov prediction;
                         plain / BN-normalized / orthogonal products, per entry law.
- `jacobian_figure`      ln kappa vs depth of input-output Jacobians of deep linear / ReLU MLPs, +- BN.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from bnlab.errors import UserError
from bnlab.rmt.theory import lyapunov_closed_form, theorem1_density, theorem1_edge

DIST_COLORS = {
    "gaussian": "C0",
    "uniform": "C1",
    "rademacher": "C2",
    "student_t": "C3",
    "orthogonal": "C4",
}


def _rows(table: pd.DataFrame, probe: str, what: str) -> pd.DataFrame:
    if not {"probe", "metric", "value"} <= set(table.columns):
        raise UserError(f"{what} needs the long table (probe, metric, value); pass the {probe} rows")
    t = table[table["probe"] == probe]
    if t.empty:
        raise UserError(f"{what}: the table has no {probe} rows")
    return t


def spectra_figure(table: pd.DataFrame, dist: str = "gaussian") -> Figure:
    """Histograms (hist_density rows) with the Theorem 1 density, one panel per m; KS in titles and caption."""
    t = _rows(table, "rmt_spectra", "spectra_figure")
    t = t[t["dist"] == dist]
    if t.empty:
        raise UserError(f"spectra_figure: no rows for dist {dist!r}")
    ms = sorted(int(m) for m in t["m"].unique())
    fig = Figure(figsize=(4.0 * len(ms), 3.6), layout="constrained")
    axes = fig.subplots(1, len(ms), squeeze=False)[0]
    captions = []
    for ax, m in zip(axes, ms):
        tm = t[t["m"] == m]
        h = tm[tm["metric"] == "hist_density"].sort_values("bin_left")
        left, right = h["bin_left"].to_numpy(float), h["bin_right"].to_numpy(float)
        ax.bar(
            left,
            h["value"].to_numpy(float),
            width=right - left,
            align="edge",
            color="0.75",
            edgecolor="0.5",
            lw=0.5,
            label="empirical",
        )
        edge = theorem1_edge(m)
        # the density diverges like x^(-m/(m+1)) at 0: a geometric grid near 0 shows it
        x = np.unique(
            np.concatenate(
                [np.geomspace(edge * 1e-4, edge * 0.05, 200), np.linspace(edge * 0.05, edge, 600)[:-1]]
            )
        )
        ax.plot(x, theorem1_density(x, m), color="C3", lw=1.5, label="Theorem 1")
        ks = float(tm[tm["metric"] == "ks"]["value"].iloc[0])
        n, draws = int(tm["n"].iloc[0]), int(tm["draws"].iloc[0])
        top = max(float(h["value"].max()), 1e-12)
        ax.set_ylim(0, 1.15 * top)
        ax.set_xlim(0, max(edge, float(right.max())))
        ax.set_title(f"M = {m}   KS = {ks:.4f}")
        ax.set_xlabel("squared singular value")
        captions.append(f"M={m}: KS={ks:.4f}")
    for ax in axes:
        ax.set_ylabel("density")
    axes[0].legend(frameon=False)
    fig.suptitle(
        f"Squared singular values of products of M {dist} N x N matrices (N = {n}, {draws} draws, "
        f"{len(left)} bins) vs Theorem 1 — " + ", ".join(captions),
        fontsize=9,
    )
    return fig


def universality_figure(table: pd.DataFrame) -> Figure:
    """KS distance to Theorem 1 per entry law (groups) and m (bars)."""
    t = _rows(table, "rmt_spectra", "universality_figure")
    ks = t[t["metric"] == "ks"].pivot_table(index="dist", columns="m", values="value", aggfunc="first")
    fig = Figure(figsize=(6.0, 3.4), layout="constrained")
    ax = fig.subplots()
    width = 0.8 / max(len(ks.columns), 1)
    x = np.arange(len(ks.index))
    for j, m in enumerate(ks.columns):
        ax.bar(x + j * width, ks[m].to_numpy(float), width=width, label=f"M = {m}")
    ax.set_xticks(x + width * (len(ks.columns) - 1) / 2, list(ks.index))
    n = int(t["n"].iloc[0])
    ax.set_ylabel("KS distance to Theorem 1")
    ax.set_title(f"Universality: entry laws with variance 1/N (N = {n})", fontsize=10)
    ax.legend(frameon=False)
    return fig


def lyapunov_figure(table: pd.DataFrame) -> Figure:
    """Exponents lambda_k (mean over seeds, +- 2 SE of the closed form) against the closed form."""
    t = _rows(table, "rmt_lyapunov", "lyapunov_figure")
    lam = t[t["metric"] == "lambda"]
    fig = Figure(figsize=(6.0, 3.6), layout="constrained")
    ax = fig.subplots()
    for (dist, product), g in lam.groupby(["dist", "product"]):
        mean = g.groupby("k")["value"].mean()
        ls = "-" if product == "plain" else "--"
        ax.plot(
            mean.index,
            mean.to_numpy(float),
            ls,
            color=DIST_COLORS.get(str(dist), "k"),
            lw=1,
            label=f"{dist}, {product}",
        )
    g0 = lam.drop_duplicates("k").sort_values("k")
    ax.plot(g0["k"], g0["closed_form"], "k:", lw=1.5, label="closed form (Gaussian)")
    n, depth = int(lam["n"].iloc[0]), int(lam["depth"].iloc[0])
    ax.set_xlabel("k")
    ax.set_ylabel(r"$\lambda_k$ per factor")
    ax.set_title(f"Lyapunov spectrum, n = {n}, depth {depth}", fontsize=10)
    ax.legend(frameon=False, fontsize=7)
    return fig


# ln κ(AB) <= ln κ(A) + ln κ(B): one factor that raises ln κ by this much has σ_min/σ_max below ~1e-12, i.e. it
# is singular to float64 precision (±1 Rademacher matrices are exactly singular with positive probability)
SINGULAR_JUMP = 0.75 * float(np.log(1 / np.finfo(np.float64).eps))


def singular_depth(depths: np.ndarray, ln_kappa: np.ndarray) -> float | None:
    """The first depth at which ln κ jumps by more than SINGULAR_JUMP in one factor (None if none)."""
    jumps = np.diff(ln_kappa) / np.maximum(np.diff(depths), 1)
    hit = np.flatnonzero(jumps > SINGULAR_JUMP)
    return float(depths[hit[0] + 1]) if hit.size else None


def condition_figure(table: pd.DataFrame) -> Figure:
    """ln kappa vs depth (mean over seeds): one colour per distribution, one line style per method (exact:
    solid, naive SVD: dotted, Lyapunov: dashed, closed form: dash-dot), two legends beside the panels. A curve
    stops where a factor is singular to float64 precision (× marker): from there κ is infinite and the value
    a float64 computation returns (about 1/eps larger) says nothing about the product."""
    t = _rows(table, "rmt_condition", "condition_figure")
    t = t[t["metric"] == "ln_kappa"]
    products = [p for p in ("plain", "normalized") if p in set(t["product"])]
    fig = Figure(figsize=(4.2 * len(products) + 2.2, 3.8), layout="constrained")
    axes = fig.subplots(1, len(products), squeeze=False)[0]
    styles = {"exact": "-", "naive": ":", "lyapunov": "--", "closed_form": "-."}
    dists: dict[str, str] = {}
    singular = False
    for ax, product in zip(axes, products):
        tp = t[t["product"] == product]
        if product == "normalized":  # orthogonal products for reference (plain rows)
            tp = pd.concat([tp, t[(t["dist"] == "orthogonal") & (t["product"] == "plain")]])
        for (dist, method), g in tp.groupby(["dist", "method"]):
            mean = g.groupby("depth")["value"].mean()
            d, v = mean.index.to_numpy(float), mean.to_numpy(float)
            color = "k" if method == "closed_form" else DIST_COLORS.get(str(dist), "k")
            if method != "closed_form":
                dists[str(dist)] = color
            stop = singular_depth(d, v) if method == "exact" else None
            if stop is not None:
                keep = d < stop
                ax.plot([stop], [v[keep][-1] if keep.any() else v[0]], "x", color=color, ms=7, mew=1.5)
                d, v, singular = d[keep], v[keep], True
            ax.plot(d, v, styles.get(str(method), "-"), color=color, lw=1)
        ax.axhline(np.log(1e16), color="0.6", lw=0.8)
        ax.annotate(
            "float64 limit of a naive SVD (1e16)",
            (0.02, np.log(1e16)),
            xycoords=("axes fraction", "data"),
            xytext=(0, -3),
            textcoords="offset points",
            va="top",
            fontsize=7,
            color="0.4",
        )
        ax.set_xlabel("depth (number of factors)")
        ax.set_ylabel(r"$\ln \kappa$")
        ax.set_title(
            "plain products" if product == "plain" else "BN-normalized (and orthogonal)", fontsize=10
        )
    colour_handles = [Line2D([], [], color=c, lw=1.5, label=d) for d, c in dists.items()]
    method_names = {
        "exact": "exact (graded QR)",
        "naive": "naive SVD",
        "lyapunov": "Lyapunov",
        "closed_form": "closed form (Gaussian)",
    }
    present = [m for m in styles if m in set(t["method"])]
    style_handles = [
        Line2D([], [], color="k" if m == "closed_form" else "0.3", ls=styles[m], lw=1, label=method_names[m])
        for m in present
    ]
    if singular:
        style_handles.append(
            Line2D([], [], color="0.3", marker="x", ls="", label="a factor singular to float64: κ = ∞")
        )
    first = fig.legend(handles=colour_handles, loc="outside right upper", title="distribution", fontsize=7)
    fig.legend(handles=style_handles, loc="outside right lower", title="method", fontsize=7)
    first.set_zorder(3)
    n = int(t["n"].iloc[0])
    fig.suptitle(f"Condition number of random products (n = {n}) vs depth", fontsize=10)
    return fig


def jacobian_figure(table: pd.DataFrame) -> Figure:
    """ln kappa of input-output Jacobians vs depth (mean over examples), per activation, with and without BN.

    Solid: ln kappa over all singular values where resolved; hollow triangles at ln(1/(width eps)):
    beyond the float64 floor (resolved = 0; per-example ReLU Jacobians are singular); dashed: over the nonzero singular values;
    dotted: exact graded-product value (linear, no BN). Black dotted: the Gaussian Lyapunov slope
    depth (lambda_1 - lambda_n) for the width.
    """
    t = _rows(table, "rmt_jacobian", "jacobian_figure")
    acts = list(dict.fromkeys(t["activation"]))
    fig = Figure(figsize=(5.0 * len(acts), 4.0), layout="constrained")
    axes = fig.subplots(1, len(acts), squeeze=False)[0]
    width = int(t["width"].iloc[0])
    lam = lyapunov_closed_form(width)
    for ax, act in zip(axes, acts):
        ta = t[t["activation"] == act]
        for bn, color in ((False, "C0"), (True, "C3")):
            tb = ta[ta["bn"] == bn]
            for metric, ls in (
                ("ln_kappa", "-"),
                ("ln_kappa_nonzero", "--"),
                ("ln_kappa_exact_product", ":"),
            ):
                g = tb[tb["metric"] == metric].replace([np.inf], np.nan)
                ok = g[g["resolved"] == 1].groupby("depth")["value"].mean().dropna()
                name = {
                    "ln_kappa": "all sv",
                    "ln_kappa_nonzero": "nonzero sv",
                    "ln_kappa_exact_product": "exact product",
                }
                tag = "BN" if bn else "no BN"
                if ok.notna().any():
                    ax.plot(
                        ok.index,
                        ok.to_numpy(float),
                        ls,
                        marker="o",
                        ms=3,
                        color=color,
                        lw=1,
                        label=f"{tag}, {name[metric]}",
                    )
                # unresolved: kappa is beyond what float64 can show (or J is singular): mark ">= floor"
                floor_depths = np.asarray(sorted(g[g["resolved"] == 0]["depth"].unique()), float)
                if floor_depths.size:
                    ax.plot(
                        floor_depths,
                        np.full(floor_depths.shape, -np.log(width * np.finfo(float).eps)),
                        "^",
                        ms=7,
                        mfc="none",
                        color=color,
                        label=f"{tag}: beyond float64 floor",
                    )
        d = np.asarray(sorted(ta["depth"].unique()), float)
        ax.plot(d, d * (lam[0] - lam[-1]), "k:", lw=1, label="Gaussian Lyapunov slope")
        ax.set_xlabel("depth")
        ax.set_ylabel(r"$\ln \kappa$ of the per-example Jacobian")
        ax.set_title(f"{act} MLP, width {width} ({str(ta['mode'].iloc[0])} statistics)", fontsize=10)
        ax.legend(frameon=False, fontsize=7)
    return fig
