"""The report's figures: one function per figure name used in the specs' `figures:` lists.

Every function is `fn(runs, data) -> Figure`: `runs` is the experiment's rows of `load_runs()`, `data` a
`RunsData` (probe tables, npz arrays and metrics of those runs, read from the run directories only — no
torch). Whatever a function leaves out (a diverged or failed run, non-finite values) it says with
`data.note(...)`: the report prints these notes as the figure's caption, so no run or NaN disappears
silently. Where a measurement has a dedicated plotting function in `bnlab.figures.{dynamics,rmt,
init_probes}` it is reused.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator

from bnlab.errors import UserError
from bnlab.figures import dynamics, init_probes
from bnlab.figures import rmt as rmt_figs
from bnlab.registry import Registry
from bnlab.store.files import read_jsonl

FigureFn = Callable[[pd.DataFrame, "RunsData"], Figure]
FIGURES: Registry[FigureFn] = Registry("figure")

# config columns that tell the runs of one experiment apart, in label order
LABEL_KEYS = (
    "model.norm",
    "model.placement",
    "optim.lr",
    "model.init.conv",
    "model.fixup",
    "model.skipinit",
    "model.block",
    "model.init.balanced_output_bias",
    "model.depth",
    "optim.batch_size",
    "task",
)
NORM_NAMES = {"batch": "BN", "none": "no BN"}
OK_STATES = ("complete", "diverged")


def _fmt(key: str, v: object) -> str:
    if key == "model.norm":
        return NORM_NAMES.get(str(v), str(v))
    if key == "optim.lr":
        return f"lr {float(v):g}"  # type: ignore[arg-type]
    if key == "model.block":
        return "pre-act" if v == "pre" else "post-act"
    if key == "model.placement":
        return f"norm: {v}"
    if key == "model.init.balanced_output_bias":
        return "balanced bias" if bool(v) else "default bias"
    if key == "model.depth":
        return f"depth {v}"
    if key == "optim.batch_size":
        return f"|B| {v}"
    if key in ("model.fixup", "model.skipinit"):
        return key.split(".")[-1] if bool(v) else ""
    if key == "model.init.conv":
        return f"{v} init"
    return str(v)


class RunsData:
    """Probe tables, arrays and metrics of one experiment's runs, read lazily from their run directories.

    runs: rows of `load_runs()` (columns run_id, run_dir, state, config.*, summary.*); all_runs: every run of
    the root (for figures that put another experiment's runs beside these, e.g. BN's reference accuracy)."""

    def __init__(self, runs: pd.DataFrame, all_runs: pd.DataFrame | None = None) -> None:
        self.runs = (
            runs.reset_index(drop=True) if len(runs) else pd.DataFrame(columns=["run_id", "run_dir", "state"])
        )
        self.all_runs = all_runs if all_runs is not None else self.runs
        self.notes: list[str] = []
        self._tables: dict[tuple[str, str], pd.DataFrame] = {}

    # --- notes (the figure's caption)
    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    # --- labels
    def label_keys(self, runs: pd.DataFrame | None = None, exclude: Sequence[str] = ()) -> list[str]:
        r = self.runs if runs is None else runs
        keys = []
        for k in LABEL_KEYS:
            if k in r.columns and k not in exclude and r[k].astype(str).nunique(dropna=False) > 1:
                keys.append(k)
        return keys

    def label(self, row: pd.Series, keys: Sequence[str] | None = None) -> str:
        keys = self.label_keys() if keys is None else keys
        parts = [_fmt(k, row[k]) for k in keys if k in row.index]
        text = ", ".join(p for p in parts if p)
        return text or str(row.get("run_id", "run"))

    def labels(self, runs: pd.DataFrame | None = None, exclude: Sequence[str] = ()) -> pd.Series:
        r = self.runs if runs is None else runs
        keys = self.label_keys(r, exclude)
        return r.apply(lambda row: self.label(row, keys), axis=1) if len(r) else pd.Series(dtype=str)

    # --- run selection
    def usable(self, runs: pd.DataFrame | None = None, states: Iterable[str] = OK_STATES) -> pd.DataFrame:
        """Runs in one of `states`; the others (failed, running, never finished) are named in a note."""
        r = self.runs if runs is None else runs
        if not len(r):
            return r
        ok = r["state"].isin(list(states))
        for _, row in r[~ok].iterrows():
            why = f": {row['reason']}" if isinstance(row.get("reason"), str) and row.get("reason") else ""
            self.note(f"left out run {row['run_id']} ({self.label(row)}): state {row['state']}{why}")
        return r[ok]

    def finite(self, df: pd.DataFrame, column: str, what: str, positive: bool = False) -> pd.DataFrame:
        """Rows of `df` whose `column` is finite (and > 0 for a log axis); the rest are counted in a note."""
        if not len(df):
            return df
        v = pd.to_numeric(df[column], errors="coerce").to_numpy(dtype=float)
        ok = np.isfinite(v) & ((v > 0) if positive else True)
        if (~ok).any():
            kind = "non-finite or non-positive (log axis)" if positive else "non-finite"
            self.note(f"{what}: {int((~ok).sum())} of {len(v)} values {kind} left out")
        return df[ok]

    # --- readers
    def probe(self, name: str, runs: pd.DataFrame | None = None) -> pd.DataFrame:
        """Rows of probes/<name>.jsonl of `runs` (default: this experiment's), with run_id and a label column."""
        r = self.runs if runs is None else runs
        frames = []
        labels = self.labels(r)
        for i, (_, row) in enumerate(r.iterrows()):
            key = (str(row["run_dir"]), name)
            if key not in self._tables:
                rows = read_jsonl(Path(str(row["run_dir"])) / "probes" / f"{name}.jsonl")[0]
                self._tables[key] = pd.DataFrame(rows)
            t = self._tables[key]
            if len(t):
                t = t.copy()
                t.insert(0, "run_id", row["run_id"])
                t["label"] = labels.iloc[i]
                frames.append(t)
        if not frames:
            return pd.DataFrame()
        df = pd.concat(frames, ignore_index=True)
        if "paper_layer" in df.columns:
            df["paper_layer"] = pd.to_numeric(df["paper_layer"], errors="coerce").astype("Int64")
        return df

    def arrays(self, row: pd.Series, name: str, step: int | None = None) -> dict[str, np.ndarray]:
        """probes/<name>.npz of one run at `step` (default: the first step stored), keys without "step<k>/"."""
        path = Path(str(row["run_dir"])) / "probes" / f"{name}.npz"
        if not path.exists():
            return {}
        try:
            with np.load(path, allow_pickle=False) as z:
                raw = {k: z[k] for k in z.files}
        except (OSError, ValueError) as e:
            self.note(f"run {row['run_id']}: {path.name} unreadable ({type(e).__name__}), left out")
            return {}
        steps = sorted({int(k.split("/", 1)[0][4:]) for k in raw if k.startswith("step") and "/" in k})
        if not steps:
            return raw
        s = steps[0] if step is None else step
        prefix = f"step{s}/"
        return {k[len(prefix) :]: v for k, v in raw.items() if k.startswith(prefix)}

    def metrics(self, row: pd.Series) -> pd.DataFrame:
        return pd.DataFrame(read_jsonl(Path(str(row["run_dir"])) / "metrics.jsonl")[0])


def batches(arrays: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
    """Split multi-batch probe arrays ("b<i>/<key>") into one dict per batch; single-batch arrays pass."""
    if not any(k.startswith("b") and "/" in k and k.split("/", 1)[0][1:].isdigit() for k in arrays):
        return [arrays]
    out: dict[int, dict[str, np.ndarray]] = {}
    for k, v in arrays.items():
        head, rest = k.split("/", 1)
        out.setdefault(int(head[1:]), {})[rest] = v
    return [out[i] for i in sorted(out)]


def _norm_rank(norm: object) -> tuple[int, str]:
    """BN first, no norm last, the others between (alphabetically)."""
    return (0 if norm == "batch" else 2 if norm == "none" else 1, str(norm))


def _message_figure(text: str, size: tuple[float, float] = (6.0, 2.0)) -> Figure:
    fig = Figure(figsize=size, layout="constrained")
    ax = fig.subplots()
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True, fontsize=9)
    return fig


def _need_runs(runs: pd.DataFrame, data: RunsData, what: str) -> pd.DataFrame:
    r = data.usable(runs)
    if not len(r):
        raise UserError(f"{what}: no complete or diverged runs")
    return r


def _pct(row: pd.Series, m: pd.DataFrame) -> np.ndarray:
    """% of training of each metrics row: step / train.steps, else epoch / train.epochs."""
    steps = row.get("train.steps")
    if steps is not None and not pd.isna(steps) and float(steps) > 0:
        return 100.0 * m["step"].to_numpy(float) / float(steps)
    epochs = float(row.get("train.epochs") or 0)
    if epochs > 0 and "epoch" in m.columns:
        return 100.0 * m["epoch"].to_numpy(float) / epochs
    return 100.0 * m["step"].to_numpy(float) / max(float(m["step"].max()), 1.0)


def _mean_std_curve(curves: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and std of several (x, y) curves on the union of their x, each interpolated within its range."""
    grid = np.unique(np.concatenate([c[0] for c in curves]))
    ys = []
    for x, y in curves:
        yi = np.interp(grid, x, y, left=np.nan, right=np.nan)
        ys.append(yi)
    stack = np.vstack(ys)
    with np.errstate(all="ignore"):
        count = np.isfinite(stack).sum(0)
        mean = np.nanmean(np.where(np.isfinite(stack), stack, np.nan), axis=0)
        std = np.nanstd(np.where(np.isfinite(stack), stack, np.nan), axis=0)
    ok = count > 0
    return grid[ok], mean[ok], std[ok]


def _diverged_note(data: RunsData, runs: pd.DataFrame) -> None:
    for _, row in runs[runs["state"] == "diverged"].iterrows():
        data.note(
            f"run {row['run_id']} ({data.label(row)}) diverged at step {row.get('step')}: "
            f"drawn up to its divergence and marked x"
        )


# ---------------------------------------------------------------------------------------------- E1
@FIGURES.register("lr_curves")
def lr_curves(runs: pd.DataFrame, data: RunsData) -> Figure:
    """E1 / Fig. 1: train and test accuracy vs % of training, mean ± std over seeds per (norm, lr)."""
    r = _need_runs(runs, data, "lr_curves")
    _diverged_note(data, r)
    labels = data.labels(r, exclude=("train.seed",))
    fig = Figure(figsize=(10.0, 3.8), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    panels = (("train accuracy", ("train_eval", "train")), ("test accuracy", ("test", "val")))
    for ax, (title, splits) in zip(axes, panels):
        used_split = None
        for color, label in enumerate(dict.fromkeys(labels)):
            group = r[labels.to_numpy() == label]
            curves, diverged_x = [], []
            for _, row in group.iterrows():
                m = data.metrics(row)
                if m.empty or "split" not in m.columns:
                    data.note(f"run {row['run_id']} ({label}): no metrics, left out")
                    continue
                split = next((s for s in splits if (m["split"] == s).any()), None)
                if split is None:
                    data.note(f"run {row['run_id']} ({label}): no {'/'.join(splits)} accuracy rows")
                    continue
                used_split = used_split or split
                ms = m[m["split"] == split].sort_values("step")
                x, y = _pct(row, ms), pd.to_numeric(ms["acc"], errors="coerce").to_numpy(float) * 100
                ok = np.isfinite(y)
                if (~ok).any():
                    data.note(
                        f"run {row['run_id']} ({label}): {int((~ok).sum())} non-finite {split} accuracies left out"
                    )
                if ok.sum() == 0:
                    continue
                curves.append((x[ok], y[ok]))
                if row["state"] == "diverged":
                    diverged_x.append((x[ok][-1], y[ok][-1]))
            if not curves:
                continue
            gx, gm, gs = _mean_std_curve(curves)
            c = f"C{color % 8}"
            n = len(curves)
            ax.plot(gx, gm, color=c, label=f"{label} (n={n})")
            if n > 1:
                ax.fill_between(gx, gm - gs, gm + gs, color=c, alpha=0.2, lw=0)
            for dx, dy in diverged_x:
                ax.plot([dx], [dy], "x", color=c, ms=8, mew=2)
        ax.set_title(f"{title} ({used_split or 'none'})")
        ax.set_xlabel("% of training")
        ax.set_xlim(0, 100)
    axes[0].set_ylabel("accuracy (%)")
    axes[0].legend(loc="lower right")
    return fig


@FIGURES.register("lr_final_table")
def lr_final_table(runs: pd.DataFrame, data: RunsData) -> Figure:
    """E1: final test accuracy per (norm, lr), mean ± std over seeds; diverged runs hatched, not averaged."""
    r = _need_runs(runs, data, "lr_final_table")
    labels = data.labels(r, exclude=("train.seed",))
    rows = []
    for label in dict.fromkeys(labels):
        g = r[labels.to_numpy() == label]
        ok = g[g["state"] == "complete"]
        acc = pd.to_numeric(ok.get("summary.test_acc", pd.Series(dtype=float)), errors="coerce") * 100
        finite = acc[np.isfinite(acc)]
        if len(finite) < len(ok):
            data.note(
                f"{label}: {len(ok) - len(finite)} complete runs without a finite test accuracy left out"
            )
        rows.append(
            (
                label,
                finite.mean() if len(finite) else np.nan,
                finite.std(ddof=0) if len(finite) > 1 else 0.0,
                len(finite),
                int((g["state"] == "diverged").sum()),
            )
        )
    fig = Figure(figsize=(max(5.0, 1.1 * len(rows) + 2), 4.0), layout="constrained")
    ax = fig.subplots()
    x = np.arange(len(rows))
    for i, (label, mean, std, n, ndiv) in enumerate(rows):
        if n:
            ax.bar(i, mean, yerr=std if n > 1 else None, color=f"C{i % 8}", capsize=3)
            ax.text(i, mean + 1, f"{mean:.1f}%\n(n={n})", ha="center", va="bottom", fontsize=7)
        if ndiv:
            ax.bar(i, 5, color="none", edgecolor="0.3", hatch="xx")
            ax.text(i, 6, f"{ndiv} diverged", ha="center", va="bottom", fontsize=7, color="0.3")
            data.note(f"{label}: {ndiv} diverged run(s) shown hatched, not averaged")
    ax.set_xticks(x, [r_[0] for r_ in rows], rotation=30, ha="right")
    ax.set_ylabel("final test accuracy (%)")
    ax.set_ylim(0, 110)
    ax.set_title("final test accuracy (mean ± std over seeds)")
    return fig


# ---------------------------------------------------------------------------------------------- E2
@FIGURES.register("sgd_noise")
def sgd_noise(runs: pd.DataFrame, data: RunsData) -> Figure:
    """E2 / Eq. 2: measured SGD noise vs α²/|B| with the bound α²C/|B| (bnlab.figures.dynamics)."""
    r = _need_runs(runs, data, "sgd_noise")
    t = data.probe("sgd_noise", r)
    if t.empty:
        raise UserError("no sgd_noise probe rows")
    keep = ["probe", "layer", "paper_layer", "metric", "value", "se", "run_id", "step", "label"]
    t = t[[c for c in keep if c in t.columns]]
    bad = t[
        t["metric"].isin(["noise", "alpha_sq_over_b"]) & ~(pd.to_numeric(t["value"], errors="coerce") > 0)
    ]
    for _, b in bad.iterrows():
        data.note(f"run {b['run_id']} step {b['step']}: {b['metric']} = {b['value']} not drawn (log axes)")
    return dynamics.noise_vs_scale(t, hue="label")


# ---------------------------------------------------------------------------------------------- E3
def _rebinned(
    parts: list[dict[str, np.ndarray]], layer: str, kind: str = "hist"
) -> tuple[np.ndarray, np.ndarray]:
    """Histograms of several minibatches (each with its own edges) on one common grid: each bin's count is
    placed at its centre (approximate by at most half a bin)."""
    centres, counts = [], []
    for p in parts:
        c, e = p.get(f"{layer}/{kind}_counts"), p.get(f"{layer}/{kind}_edges")
        if c is None or e is None:
            continue
        centres.append((e[:-1] + e[1:]) / 2)
        counts.append(np.asarray(c, float))
    if not centres:
        raise UserError(f"no {kind} histogram arrays for layer {layer}")
    if len(centres) == 1:
        p = next(p for p in parts if f"{layer}/{kind}_edges" in p)
        return np.asarray(p[f"{layer}/{kind}_counts"], float), np.asarray(p[f"{layer}/{kind}_edges"], float)
    allc = np.concatenate(centres)
    edges = np.linspace(allc.min(), allc.max(), len(centres[0]) + 1)
    hist, _ = np.histogram(allc, bins=edges, weights=np.concatenate(counts))
    return hist, edges


@FIGURES.register("grad_histograms")
def grad_histograms(runs: pd.DataFrame, data: RunsData) -> Figure:
    """E3 / Fig. 2: histogram of ∂L/∂K at the layer-55 kernel, BN vs no BN side by side, each its own axes."""
    r = _need_runs(runs, data, "grad_histograms")
    rowkeys = data.label_keys(r, exclude=("model.norm", "train.seed"))
    norms = sorted(dict.fromkeys(r["model.norm"]), key=_norm_rank) if "model.norm" in r.columns else [None]
    groups = list(dict.fromkeys(r.apply(lambda row: data.label(row, rowkeys), axis=1))) if rowkeys else [""]
    fig = Figure(figsize=(4.0 * len(norms), 2.8 * len(groups)), layout="constrained")
    axes = fig.subplots(len(groups), len(norms), squeeze=False)
    for _, row in r.iterrows():
        gi = groups.index(data.label(row, rowkeys)) if rowkeys else 0
        ni = norms.index(row["model.norm"]) if norms != [None] else 0
        ax = axes[gi, ni]
        parts = batches(data.arrays(row, "gradient_histogram"))
        layers = sorted({k.rsplit("/", 1)[0] for p in parts for k in p if k.endswith("/hist_counts")})
        if not layers:
            ax.text(0.5, 0.5, "no histogram arrays", ha="center", transform=ax.transAxes)
            data.note(f"run {row['run_id']}: no gradient_histogram arrays")
            continue
        counts, edges = _rebinned(parts, layers[0])
        ax.stairs(
            counts, edges, fill=True, alpha=0.85, color="C0" if row.get("model.norm") == "batch" else "C1"
        )
        ax.set_yscale("symlog", linthresh=1)
        t = data.probe("gradient_histogram", r[r["run_id"] == row["run_id"]])
        std = t[(t["metric"] == "std")]["value"].mean() if len(t) else float("nan")
        kurt = t[(t["metric"] == "kurtosis")]["value"].mean() if len(t) else float("nan")
        pl = t["paper_layer"].dropna().iloc[0] if len(t) and t["paper_layer"].notna().any() else None
        title = f"{_fmt('model.norm', row.get('model.norm'))}: {layers[0]}" + (
            f" (paper layer {pl})" if pl else ""
        )
        if rowkeys:
            title += f"\n{data.label(row, rowkeys)}"
        ax.set_title(title, fontsize=8)
        ax.text(
            0.98,
            0.95,
            f"std {std:.3g}\nkurtosis {kurt:.3g}\n{len(parts)} minibatch(es)",
            ha="right",
            va="top",
            transform=ax.transAxes,
            fontsize=7,
        )
        ax.set_xlabel("∂L/∂K")
        ax.set_ylabel("count")
        if len(parts) > 1:
            data.note("histograms of several minibatches are re-binned on one grid (each bin at its centre)")
    return fig


# ---------------------------------------------------------------------------------------------- E4
@FIGURES.register("step_size")
def step_size(runs: pd.DataFrame, data: RunsData) -> Figure:
    """E4 / Fig. 3: r(η) = L_B(θ − ηg)/L_B(θ) at minibatches t, BN vs no BN, log y (bnlab.figures.dynamics)."""
    r = _need_runs(runs, data, "step_size")
    t = data.probe("step_size_scan", r)
    if t.empty:
        raise UserError("no step_size_scan probe rows")
    t = t[t["metric"] == "ratio"]
    if "direction" in t.columns:
        t = t[t["direction"] == "gradient"]
    bad = t[~(pd.to_numeric(t["value"], errors="coerce").between(0, np.inf, inclusive="neither"))]
    if len(bad):
        data.note(
            f"{len(bad)} of {len(t)} loss ratios non-finite or non-positive (overflowed losses): "
            "left out of the lines, counted in the legend"
        )
    t = t.assign(step=t["step"].astype(int) + 1)  # minibatch t = step + 1 (the paper counts from 1)
    return dynamics.step_size_curves(
        t[["probe", "metric", "value", "eta", "direction", "label", "step"]], panel="label", hue="step"
    )


# ---------------------------------------------------------------------------------------------- E5
@FIGURES.register("diverging_step")
def diverging_step(runs: pd.DataFrame, data: RunsData) -> Figure:
    """E5 / Fig. 4: channel |mean| and variance along the diverging update, channel × % of step, log colour."""
    r = _need_runs(runs, data, "diverging_step")
    for _, row in r.iterrows():
        arr = data.arrays(row, "diverging_step")
        if "s" in arr and any(k.startswith("mean/") for k in arr):
            t = data.probe("diverging_step", r[r["run_id"] == row["run_id"]])
            titles = {}
            if len(t) and "paper_layer" in t.columns:
                for _, tr in t.dropna(subset=["paper_layer"]).drop_duplicates("layer").iterrows():
                    titles[str(tr["layer"])] = f"{tr['layer']} (paper layer {tr['paper_layer']})"
            for k, v in arr.items():
                if not np.all(np.isfinite(v)):
                    data.note(
                        f"{k}: {int((~np.isfinite(v)).sum())} non-finite channel moments (overflow) left blank"
                    )
            return dynamics.channel_heatmaps(arr, titles=titles)
    # no diverging update: show why, with the training loss of the run(s)
    fig = Figure(figsize=(6.0, 3.2), layout="constrained")
    ax = fig.subplots()
    for _, row in r.iterrows():
        m = data.metrics(row)
        if len(m) and "split" in m.columns:
            tr = m[m["split"] == "train"]
            tr = data.finite(tr, "loss", f"run {row['run_id']} training loss", positive=True)
            ax.plot(tr["step"], tr["loss"], marker=".", label=f"{data.label(row)} (lr {row.get('optim.lr')})")
        data.note(
            f"run {row['run_id']} did not diverge (state {row['state']}): no diverging update to scan; "
            "raise optim.lr"
        )
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_title("no diverging update: the run's training loss", fontsize=9)
    if ax.get_legend_handles_labels()[0]:
        ax.legend()
    return fig


# ---------------------------------------------------------------------------------------------- E6
@FIGURES.register("depth_profile")
def depth_profile(runs: pd.DataFrame, data: RunsData) -> Figure:
    """E6 / Fig. 5: log10 |channel mean| and log10 std vs depth at init, BN vs no BN (bnlab.figures.init_probes)."""
    r = _need_runs(runs, data, "depth_profile")
    tables = {}
    for label, g in data.probe("activation_moments", r).groupby("label", sort=False):
        tables[str(label)] = data.finite(g, "value", f"{label} activation moments")
    if not tables:
        raise UserError("no activation_moments probe rows")
    return init_probes.depth_profile(tables)


# ---------------------------------------------------------------------------------------------- E7
@FIGURES.register("class_bias")
def class_bias(runs: pd.DataFrame, data: RunsData) -> Figure:
    """E7 / Fig. 6: ∂L/∂z heatmaps (images × classes) per variant and the share of the top predicted class."""
    r = _need_runs(runs, data, "class_bias")
    labels = data.labels(r)
    panels = []
    for i, (_, row) in enumerate(r.iterrows()):
        parts = batches(data.arrays(row, "output_bias"))
        if "dL_dz" not in parts[0]:
            data.note(f"run {row['run_id']} ({labels.iloc[i]}): no dL_dz array, left out of the heatmaps")
            continue
        panels.append((labels.iloc[i], parts[0]["dL_dz"], row))
    t = data.probe("output_bias", r)
    n = max(len(panels), 1)
    fig = Figure(figsize=(max(8.0, 2.0 * n), 7.0), layout="constrained")
    subs = fig.subfigures(2, 1, height_ratios=[2.2, 1.0])
    top, bottom = subs[0], subs[1]  # type: ignore[index]  # an array of 2 SubFigures for (2, 1)
    axes = top.subplots(1, n, squeeze=False)[0]
    for ax, (label, dz, _row) in zip(axes, panels):
        lim = float(np.nanmax(np.abs(dz))) if np.isfinite(dz).any() else 1.0
        im = ax.imshow(dz, aspect="auto", cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
        ax.set_title(label.replace(", ", "\n"), fontsize=7)
        ax.set_xlabel("class")
        ax.grid(False)
        top.colorbar(im, ax=ax, shrink=0.7)
    axes[0].set_ylabel("image")
    ax = bottom.subplots()
    if len(t):
        share = t[t["metric"] == "top_class_share"].groupby("label", sort=False)["value"].mean()
        ax.bar(np.arange(len(share)), share.to_numpy(float), color=[f"C{i % 8}" for i in range(len(share))])
        ax.set_xticks(np.arange(len(share)), list(share.index), rotation=20, ha="right", fontsize=7)
        ax.axhline(0.1, color="0.4", ls="--", lw=0.8)
        ax.text(0, 0.12, "uniform (1/K)", fontsize=7, color="0.4")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("top-class share")
    return fig


# ---------------------------------------------------------------------------------------------- E8
@FIGURES.register("kernel_alignment")
def kernel_alignment(runs: pd.DataFrame, data: RunsData) -> Figure:
    """E8 / Table 1: Σ|d| / |Σd| per layer for each reduction (spatial, batch, all), BN vs no BN, log y."""
    r = _need_runs(runs, data, "kernel_alignment")
    t = data.probe("kernel_alignment", r)
    if t.empty:
        raise UserError("no kernel_alignment probe rows")
    tables = {}
    for label, g in t.groupby("label", sort=False):
        ratio = g[g["metric"] == "ratio"]
        bad = ratio[
            ~(pd.to_numeric(ratio["value"], errors="coerce") > 0) | ~np.isfinite(ratio["value"].astype(float))
        ]
        if len(bad):
            data.note(f"{label}: {len(bad)} non-finite or zero ratios (|Σd| = 0) not drawn on the log axis")
        tables[str(label)] = g
    reduces = [x for x in ("spatial", "batch", "all") if x in set(t.get("reduce", []))]
    return init_probes.kernel_alignment_bars(tables, reduces=reduces or ("all",))


# ---------------------------------------------------------------------------------------------- E9
@FIGURES.register("channel_rank")
def channel_rank(runs: pd.DataFrame, data: RunsData) -> Figure:
    """E9: normalized singular-value spectra of conv gradients at three depths (bnlab.figures.init_probes)."""
    r = _need_runs(runs, data, "channel_rank")
    arrays: dict[str, dict[str, np.ndarray]] = {}
    labels = data.labels(r)
    for i, (_, row) in enumerate(r.iterrows()):
        a = batches(data.arrays(row, "gradient_spectrum"))[0]
        if a:
            arrays[labels.iloc[i]] = a
    if not arrays:
        raise UserError("no gradient_spectrum arrays")
    common = None
    for a in arrays.values():
        names = [k[: -len("/gradient_sv")] for k in a if k.endswith("/gradient_sv")]
        common = names if common is None else [n for n in common if n in names]
    common = [n for n in (common or []) if n != "conv1"] or (common or [])
    if not common:
        raise UserError("the runs share no layer with gradient spectra")
    pick = [common[int(round(f * (len(common) - 1)))] for f in (0.15, 0.5, 0.85)]
    pick = list(dict.fromkeys(pick))
    data.note(f"layers shown: {', '.join(pick)} (early, middle, late of {len(common)} conv layers)")
    return init_probes.normalized_spectra(arrays, pick)


@FIGURES.register("gradient_variance")
def gradient_variance(runs: pd.DataFrame, data: RunsData) -> Figure:
    """E9b: intra-layer vs intra-minibatch variance of the gradient per layer, BN vs no BN, log y."""
    r = _need_runs(runs, data, "gradient_variance")
    t = data.probe("gradient_variance", r)
    if t.empty:
        raise UserError("no gradient_variance probe rows")
    fig = Figure(figsize=(9.0, 3.6), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    for ax, metric in zip(axes, ("intra_layer", "intra_batch")):
        for label, g in t[t["metric"] == metric].groupby("label", sort=False):
            g = data.finite(g, "value", f"{label} {metric}", positive=True)
            x = (
                g["paper_layer"].astype(float).to_numpy()
                if g["paper_layer"].notna().all()
                else np.arange(len(g))
            )
            ax.plot(x, g["value"].to_numpy(float), marker="o", label=str(label))
        ax.set_yscale("log")
        ax.set_xlabel("paper layer")
        ax.set_title(
            {
                "intra_layer": "variance across a layer's entries",
                "intra_batch": "variance across the minibatch",
            }[metric]
        )
        ax.legend()
    axes[0].set_ylabel("gradient variance")
    mode = t["per_example"].iloc[0] if "per_example" in t.columns else "?"
    data.note(f"per-example gradients in {mode} mode")
    return fig


# ---------------------------------------------------------------------------------------------- E10
def _rmt_table(runs: pd.DataFrame, data: RunsData, probe: str) -> pd.DataFrame:
    r = _need_runs(runs, data, probe)
    t = data.probe(probe, r)
    if t.empty:
        raise UserError(f"no {probe} rows in the E10 runs")
    return t


@FIGURES.register("rmt_spectra")
def rmt_spectra(runs: pd.DataFrame, data: RunsData) -> Figure:
    """E10 / Theorem 1 figure: squared singular values of products of M Gaussian matrices (bnlab.figures.rmt)."""
    return rmt_figs.spectra_figure(_rmt_table(runs, data, "rmt_spectra"))


@FIGURES.register("rmt_condition")
def rmt_condition(runs: pd.DataFrame, data: RunsData) -> Figure:
    """E10: ln κ vs depth of random products, exact vs naive vs Lyapunov (bnlab.figures.rmt)."""
    return rmt_figs.condition_figure(_rmt_table(runs, data, "rmt_condition"))


@FIGURES.register("rmt_jacobian")
def rmt_jacobian(runs: pd.DataFrame, data: RunsData) -> Figure:
    """E10: ln κ of input-output Jacobians of deep MLPs with and without BN (bnlab.figures.rmt)."""
    return rmt_figs.jacobian_figure(_rmt_table(runs, data, "rmt_jacobian"))


# ---------------------------------------------------------------------------------------------- max lr
def max_lr_table(runs: pd.DataFrame, data: RunsData) -> pd.DataFrame:
    """One row per max_lr run: label columns + max_stable_lr, min_unstable_lr, censored (summary.json)."""
    r = (
        runs[runs.get("task", pd.Series("train", index=runs.index)) == "max_lr"]
        if "task" in runs.columns
        else runs
    )
    r = data.usable(r)
    out = r.copy()
    for k in ("max_stable_lr", "min_unstable_lr", "censored"):
        col = f"summary.{k}"
        out[k] = out[col] if col in out.columns else np.nan
    out["max_stable_lr"] = pd.to_numeric(out["max_stable_lr"], errors="coerce")
    out["min_unstable_lr"] = pd.to_numeric(out["min_unstable_lr"], errors="coerce")
    out["censored"] = out["censored"].fillna(False).astype(bool)
    return out


def _lr_bars(
    ax, table: pd.DataFrame, labels: Sequence[str], data: RunsData, colors: Sequence[str] | None = None
) -> None:  # noqa: ANN001
    """Bars of the max stable lr with a bracket up to the smallest unstable lr; censored searches marked."""
    for i, (label, (_, row)) in enumerate(zip(labels, table.iterrows())):
        lo, hi = row["max_stable_lr"], row["min_unstable_lr"]
        c = colors[i] if colors else f"C{i % 8}"
        if np.isfinite(lo) and lo > 0:
            ax.bar(i, lo, color=c)
            ax.text(i, lo, f"{lo:.2g}", ha="center", va="bottom", fontsize=7)
        else:
            data.note(f"{label}: no stable lr found in the search range (max_stable_lr {lo})")
        if np.isfinite(hi) and hi > 0:
            ax.plot([i, i], [lo if np.isfinite(lo) and lo > 0 else hi / 10, hi], color="0.2", lw=1)
            ax.plot([i], [hi], "v", color="0.2", ms=5)
        if row["censored"]:
            ax.annotate(
                "censored",
                (i, lo if np.isfinite(lo) and lo > 0 else 1e-6),
                fontsize=6,
                ha="center",
                va="top",
                color="C3",
                xytext=(0, -3),
                textcoords="offset points",
            )
            data.note(f"{label}: search censored at the end of its range (the bound is one-sided)")
    ax.set_yscale("log")
    ax.set_xticks(np.arange(len(labels)), list(labels), rotation=30, ha="right", fontsize=7)
    ax.set_ylabel("largest stable lr (▼ smallest unstable)")


@FIGURES.register("max_lr_vs_depth")
def max_lr_vs_depth(runs: pd.DataFrame, data: RunsData) -> Figure:
    """E11a: largest stable lr vs depth, BN vs no BN (log-log), bracketed by the smallest unstable lr."""
    t = max_lr_table(runs, data)
    if not len(t):
        raise UserError("no max_lr runs")
    fig = Figure(figsize=(5.5, 4.0), layout="constrained")
    ax = fig.subplots()
    for i, (norm, g) in enumerate(t.groupby("model.norm", sort=False)):
        g = g.sort_values("model.depth")
        ok = data.finite(g, "max_stable_lr", f"{_fmt('model.norm', norm)} max stable lr", positive=True)
        c = f"C{i % 8}"
        ax.plot(ok["model.depth"], ok["max_stable_lr"], "o-", color=c, label=_fmt("model.norm", norm))
        hi = g[np.isfinite(g["min_unstable_lr"])]
        ax.plot(hi["model.depth"], hi["min_unstable_lr"], "v", color=c, mfc="none")
        cens = ok[ok["censored"]]
        if len(cens):
            ax.plot(cens["model.depth"], cens["max_stable_lr"], "^", color=c, ms=9, mfc="none")
            data.note(f"{_fmt('model.norm', norm)}: censored searches (open triangles) give one-sided bounds")
    ax.set_xscale("log")
    ax.set_yscale("log")
    depths = sorted({int(d) for d in t["model.depth"]})
    ax.set_xticks(depths, [str(d) for d in depths])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("depth")
    ax.set_ylabel("largest stable lr (▽ smallest unstable)")
    ax.legend()
    return fig


def _bars_figure(t: pd.DataFrame, data: RunsData, title: str) -> Figure:
    labels = list(data.labels(t, exclude=("task", "train.seed"))) if len(t) else []
    fig = Figure(figsize=(max(5.0, 0.9 * len(labels) + 2), 4.0), layout="constrained")
    ax = fig.subplots()
    _lr_bars(ax, t, labels, data)
    ax.set_title(title)
    return fig


@FIGURES.register("norm_zoo")
def norm_zoo(runs: pd.DataFrame, data: RunsData) -> Figure:
    """E12a: largest stable lr per normalization layer."""
    t = max_lr_table(runs, data)
    if not len(t):
        raise UserError("no max_lr runs")
    return _bars_figure(t, data, "largest stable lr per norm")


@FIGURES.register("init_zoo")
def init_zoo(runs: pd.DataFrame, data: RunsData) -> Figure:
    """E12d: largest stable lr of the unnormalized net per initialization."""
    t = max_lr_table(runs, data)
    if not len(t):
        raise UserError("no max_lr runs")
    return _bars_figure(t, data, "largest stable lr per init (no BN)")


PLACEMENTS = ("all", "final_prepool", "final_prefc", "none")


def _by_placement(t: pd.DataFrame) -> pd.DataFrame:
    """Rows in the order BN everywhere, single final norms, no norm (unknown placements last)."""
    if not len(t) or "model.placement" not in t.columns:
        return t
    rank = {p: i for i, p in enumerate(PLACEMENTS)}
    return t.iloc[np.argsort([rank.get(p, len(rank)) for p in t["model.placement"]], kind="stable")]


@FIGURES.register("single_norm")
def single_norm(runs: pd.DataFrame, data: RunsData) -> Figure:
    """E11b: largest stable lr and test accuracy (at lr 1e-4) per norm placement."""
    fig = Figure(figsize=(10.0, 4.0), layout="constrained")
    ax_lr, ax_acc = fig.subplots(1, 2)
    lr_t = _by_placement(max_lr_table(runs, data))
    if len(lr_t):
        _lr_bars(ax_lr, lr_t, [_fmt("model.placement", p) for p in lr_t["model.placement"]], data)
    ax_lr.set_title("largest stable lr per placement")
    tr = (
        _by_placement(data.usable(runs[runs["task"] == "train"]))
        if "task" in runs.columns
        else pd.DataFrame()
    )
    if len(tr):
        acc = pd.to_numeric(tr.get("summary.test_acc"), errors="coerce") * 100
        for i, ((_, row), a) in enumerate(zip(tr.iterrows(), acc)):
            if np.isfinite(a):
                ax_acc.bar(i, a, color=f"C{i % 8}")
                ax_acc.text(i, a, f"{a:.1f}", ha="center", va="bottom", fontsize=7)
            else:
                data.note(
                    f"run {row['run_id']} ({_fmt('model.placement', row['model.placement'])}): "
                    f"no finite test accuracy (state {row['state']})"
                )
        ax_acc.set_xticks(
            np.arange(len(tr)),
            [_fmt("model.placement", p) for p in tr["model.placement"]],
            rotation=30,
            ha="right",
            fontsize=7,
        )
        lr = tr["optim.lr"].iloc[0]
        ax_acc.set_title(f"test accuracy at lr {lr:g}")
    else:
        ax_acc.text(0.5, 0.5, "no training runs", ha="center", transform=ax_acc.transAxes)
    ax_acc.set_ylabel("test accuracy (%)")
    return fig


# ---------------------------------------------------------------------------------------------- E12b, c, e
def noise_scale(row: pd.Series) -> float:
    """Smith & Le's SGD noise scale α / ((1 − m)|B|)."""
    return float(row["optim.lr"]) / (
        (1.0 - float(row.get("optim.momentum", 0.9))) * float(row["optim.batch_size"])
    )


@FIGURES.register("small_batch")
def small_batch(runs: pd.DataFrame, data: RunsData) -> Figure:
    """E12b: test accuracy of the unnormalized net vs the noise scale α/((1−m)|B|); BN's reference (E1)."""
    r = _need_runs(runs, data, "small_batch")
    fig = Figure(figsize=(5.5, 4.0), layout="constrained")
    ax = fig.subplots()
    ok = r[r["state"] == "complete"]
    _diverged_note(data, r)
    x = ok.apply(noise_scale, axis=1).to_numpy(float) if len(ok) else np.array([])
    y = (
        pd.to_numeric(ok.get("summary.test_acc"), errors="coerce").to_numpy(float) * 100
        if len(ok)
        else np.array([])
    )
    good = np.isfinite(x) & np.isfinite(y)
    if (~good).any():
        data.note(f"{int((~good).sum())} runs without a finite test accuracy left out")
    order = np.argsort(x[good])
    name = ", ".join(
        sorted(
            {f"{_fmt('model.norm', n)}, lr {float(lr):g}" for n, lr in zip(ok["model.norm"], ok["optim.lr"])}
        )
    )
    ax.plot(x[good][order], y[good][order], "o-", label=name or None)
    for xi, yi, b in zip(x[good], y[good], ok["optim.batch_size"].to_numpy()[good]):
        ax.annotate(f"|B|={b}", (xi, yi), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ref = bn_reference(data)
    if ref is not None:
        ax.axhline(ref[1], color="C1", ls="--", lw=1)
        ax.axvline(ref[0], color="C1", ls=":", lw=1)
        ax.text(
            ref[0],
            ref[1],
            f"BN, lr 0.1 (E1): {ref[1]:.1f}% ",
            color="C1",
            fontsize=7,
            va="bottom",
            ha="right",
        )
    else:
        data.note("no BN reference run (E1, BN, lr 0.1, same profile) in this runs root")
    ax.set_xscale("log")
    ax.set_xlabel("noise scale α / ((1 − m)|B|)")
    ax.set_ylabel("test accuracy (%)")
    if ax.get_legend_handles_labels()[0]:
        ax.legend()
    return fig


def bn_reference(data: RunsData) -> tuple[float, float] | None:
    """(noise scale, mean test accuracy %) of the complete E1 runs with BN at lr 0.1 in the same root."""
    a = data.all_runs
    if not len(a) or "model.norm" not in a.columns or "meta.experiments" not in a.columns:
        return None
    e1 = a[
        a["meta.experiments"].apply(
            lambda v: any(str(s).split("/")[0] == "E1" for s in (v or [])) if isinstance(v, list) else False
        )
    ]
    e1 = e1[
        (e1["model.norm"] == "batch")
        & (e1["state"] == "complete")
        & np.isclose(e1["optim.lr"].astype(float), 0.1)
    ]
    acc = (
        pd.to_numeric(e1.get("summary.test_acc"), errors="coerce").dropna()
        if len(e1)
        else pd.Series(dtype=float)
    )
    if not len(acc):
        return None
    return noise_scale(e1.iloc[0]), float(acc.mean() * 100)


def _by_norm_bias(t: pd.DataFrame) -> pd.DataFrame:
    """Rows ordered by norm (BN first) then default before balanced bias: the same colours in every panel."""
    if not len(t) or "model.norm" not in t.columns:
        return t
    bal = t.get("model.init.balanced_output_bias", pd.Series(False, index=t.index)).astype(bool)
    keys = [(_norm_rank(n), b) for n, b in zip(t["model.norm"], bal)]
    return t.iloc[sorted(range(len(keys)), key=keys.__getitem__)]


@FIGURES.register("bias_fix")
def bias_fix(runs: pd.DataFrame, data: RunsData) -> Figure:
    """E12c: top-class share at init and largest stable lr, with and without the balanced output bias."""
    fig = Figure(figsize=(10.0, 4.0), layout="constrained")
    ax_share, ax_lr = fig.subplots(1, 2)
    tr = (
        _by_norm_bias(data.usable(runs[runs["task"] == "train"]))
        if "task" in runs.columns
        else pd.DataFrame()
    )
    t = data.probe("output_bias", tr) if len(tr) else pd.DataFrame()
    if len(t):
        share = t[t["metric"] == "top_class_share"].groupby("label", sort=False)["value"].mean()
        share.index = [s.replace(", train", "") for s in share.index]
        ax_share.bar(
            np.arange(len(share)), share.to_numpy(float), color=[f"C{i % 8}" for i in range(len(share))]
        )
        ax_share.set_xticks(np.arange(len(share)), list(share.index), rotation=30, ha="right", fontsize=7)
        ax_share.axhline(0.1, color="0.4", ls="--", lw=0.8)
    else:
        ax_share.text(0.5, 0.5, "no output_bias rows", ha="center", transform=ax_share.transAxes)
    ax_share.set_ylim(0, 1.05)
    ax_share.set_ylabel("top-class share at init")
    lr_t = _by_norm_bias(max_lr_table(runs, data))
    if len(lr_t):
        _lr_bars(ax_lr, lr_t, list(data.labels(lr_t, exclude=("task",))), data)
    ax_lr.set_title("largest stable lr")
    return fig


@FIGURES.register("geometry")
def geometry(runs: pd.DataFrame, data: RunsData) -> Figure:
    """E12e: lr·λ_max vs the stability limit 2(1+β); input-independent gradient fraction; radial share."""
    r = _need_runs(runs, data, "geometry")
    fig = Figure(figsize=(13.0, 3.8), layout="constrained")
    ax_l, ax_f, ax_r = fig.subplots(1, 3)
    h = data.probe("hessian_top_eig", r)
    if len(h):
        for i, (label, g) in enumerate(h.groupby("label", sort=False)):
            w = g.pivot_table(index="step", columns="metric", values="value", aggfunc="first")
            if "lambda_lr" not in w.columns:
                continue
            w = data.finite(w.reset_index(), "lambda_lr", f"{label} lr·λ_max", positive=True)
            ax_l.plot(w["step"], w["lambda_lr"], "o-", color=f"C{i}", label=str(label))
        for limit in sorted(set(h[h["metric"] == "limit"]["value"].dropna())):
            ax_l.axhline(limit, color="0.3", ls="--", lw=0.9)
            ax_l.text(0, limit, f" 2(1+β) = {limit:g}", fontsize=7, va="bottom")
        ax_l.set_yscale("log")
        ax_l.legend()
    ax_l.set_xlabel("step")
    ax_l.set_ylabel("lr · λ_max")
    ax_l.set_title("curvature vs SGD's stability limit")
    g_t = data.probe("gradient_geometry", r)
    if len(g_t):
        for i, (label, g) in enumerate(g_t.groupby("label", sort=False)):
            f = g[(g["metric"] == "input_independent_fraction") & (g["layer"] == "model")].sort_values("step")
            f = data.finite(f, "value", f"{label} input-independent fraction")
            ax_f.plot(f["step"], f["value"], "o-", color=f"C{i}", label=str(label))
            rad = g[(g["metric"] == "radial_fraction") & (g.get("direction") == "mean_gradient")]
            rad = data.finite(rad, "value", f"{label} radial fraction")
            med = rad.groupby("step")["value"].median()
            ax_r.plot(med.index, med.to_numpy(float), "o-", color=f"C{i}", label=str(label))
        ax_f.legend()
        ax_r.legend()
    ax_f.set_xlabel("step")
    ax_f.set_ylabel("‖E g_B‖² / E‖g_B‖²")
    ax_f.set_title("input-independent part of the gradient")
    ax_f.set_ylim(0, 1.05)
    ax_r.set_xlabel("step")
    ax_r.set_ylabel("radial fraction (median over layers)")
    ax_r.set_title("mean gradient: radial share per weight")
    ax_r.set_ylim(0, 1.05)
    return fig


def message_figure(text: str) -> Figure:
    """A figure that only says `text` (used by the report where no data exists)."""
    return _message_figure(text)
