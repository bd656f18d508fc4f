"""Our numbers per experiment: QUANTITIES[id](data) -> {quantity name: float}, read from store output only.

The names are the ones paper_values.yaml compares against and its verdict rules use. A quantity that
cannot be measured (no such run, a run that did not diverge, a zero denominator) is NaN and the reason
goes into `data.note(...)`, which the report prints under the table.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from bnlab.figures.report_figures import RunsData, bn_reference, max_lr_table, noise_scale
from bnlab.registry import Registry

Quantities = dict[str, float]
QUANTITIES: Registry[Callable[[RunsData], Quantities]] = Registry("experiment quantities")
NAN = float("nan")


def _sel(runs: pd.DataFrame, **eq: object) -> pd.DataFrame:
    """Rows whose dotted config columns (given with "__" for ".") equal the values (floats compared closely)."""
    out = runs
    for key, want in eq.items():
        col = key.replace("__", ".")
        if col not in out.columns:
            return out.iloc[0:0]
        if isinstance(want, float):
            out = out[np.isclose(pd.to_numeric(out[col], errors="coerce").astype(float), want)]
        else:
            out = out[out[col] == want]
    return out


def _ratio(a: float, b: float) -> float:
    return a / b if np.isfinite(a) and np.isfinite(b) and b != 0 else NAN


def _mean(s: pd.Series | np.ndarray) -> float:
    v = pd.to_numeric(pd.Series(s), errors="coerce").to_numpy(float)
    v = v[np.isfinite(v)]
    return float(v.mean()) if len(v) else NAN


def _median(s: pd.Series | np.ndarray) -> float:
    v = pd.to_numeric(pd.Series(s), errors="coerce").to_numpy(float)
    v = v[np.isfinite(v)]
    return float(np.median(v)) if len(v) else NAN


def _prefer(runs: pd.DataFrame, col: str, value: object) -> pd.DataFrame:
    """The rows with `col == value` if there are any (e.g. the paper's Xavier init), else all rows."""
    if col in runs.columns and (runs[col] == value).any():
        return runs[runs[col] == value]
    return runs


@QUANTITIES.register("E1")
def e1(data: RunsData) -> Quantities:
    r = data.usable(data.runs)
    q: Quantities = {}
    acc: dict[tuple[str, float], float] = {}
    for norm, name in (("batch", "BN"), ("none", "no BN")):
        for lr in (0.1, 0.003, 0.0001):
            g = _sel(r, model__norm=norm, optim__lr=lr)
            done = g[g["state"] == "complete"]
            a = _mean(done.get("summary.test_acc", pd.Series(dtype=float))) * 100
            acc[(norm, lr)] = a
            if norm == "batch" or lr == 0.0001:
                q[f"test acc, {name}, lr {lr:g} (%)"] = a
            if len(g) and not len(done):
                data.note(f"{name}, lr {lr:g}: no complete run ({', '.join(g['state'].astype(str))})")
    q["BN - no BN test acc at lr 0.0001 (points)"] = acc[("batch", 0.0001)] - acc[("none", 0.0001)]
    q["BN lr 0.1 - BN lr 0.0001 test acc (points)"] = acc[("batch", 0.1)] - acc[("batch", 0.0001)]
    big = (
        r[(r.get("model.norm") == "none") & (pd.to_numeric(r.get("optim.lr"), errors="coerce") >= 0.003)]
        if len(r)
        else r
    )
    q["share of no-BN runs at lr >= 0.003 that diverge"] = (
        float((big["state"] == "diverged").mean()) if len(big) else NAN
    )
    bn = _sel(r, model__norm="batch", optim__lr=0.1)
    q["final train acc, BN, lr 0.1 (%)"] = (
        _mean(bn[bn["state"] == "complete"].get("summary.train_acc", pd.Series(dtype=float))) * 100
    )
    return q


@QUANTITIES.register("E2")
def e2(data: RunsData) -> Quantities:
    t = data.probe("sgd_noise", data.usable(data.runs))
    q: Quantities = {}
    if t.empty:
        return q
    nb = t[t["metric"] == "noise_over_bound"]
    for mode, name in (
        ("none", "no-BN noise / bound alpha^2 C/|B| (max over steps)"),
        ("batch_stats", "BN noise / bound (max over steps; bound's premise fails with BN)"),
    ):
        v = pd.to_numeric(nb[nb["norm_mode"] == mode]["value"], errors="coerce")
        q[name] = float(v.max()) if v.notna().any() else NAN
    noise = t[t["metric"] == "noise"]
    first = noise[noise["step"] == noise["step"].min()]
    q["BN / no-BN noise at the first probe"] = _ratio(
        _mean(first[first["norm_mode"] == "batch_stats"]["value"]),
        _mean(first[first["norm_mode"] == "none"]["value"]),
    )
    return q


@QUANTITIES.register("E3")
def e3(data: RunsData) -> Quantities:
    r = _prefer(_prefer(data.usable(data.runs), "model.init.conv", "xavier"), "model.block", "post")
    t = data.probe("gradient_histogram", r)
    q: Quantities = {}
    if t.empty:
        return q
    byrun = r.set_index("run_id")["model.norm"]
    t = t.assign(norm=t["run_id"].map(byrun))
    for norm, name in (("batch", "BN"), ("none", "no-BN")):
        g = t[t["norm"] == norm]
        q[f"{name} std of dL/dK at layer 55"] = _mean(g[g["metric"] == "std"]["value"])
        q[f"{name} excess kurtosis at layer 55"] = _mean(g[g["metric"] == "kurtosis"]["value"])
    q["no-BN / BN std of dL/dK at layer 55"] = _ratio(
        q["no-BN std of dL/dK at layer 55"], q["BN std of dL/dK at layer 55"]
    )
    if r["model.init.conv"].nunique() == 1:
        data.note(f"E3 numbers from {r['model.init.conv'].iloc[0]} init, {len(r)} runs")
    return q


def _helpful(g: pd.DataFrame) -> float:
    """Largest η such that r(η') < 1 for every η' <= η (the first crossing of r = 1), NaN if r(η_min) >= 1."""
    g = g.sort_values("eta")
    r = pd.to_numeric(g["value"], errors="coerce").to_numpy(float)
    eta = g["eta"].to_numpy(float)
    below = np.isfinite(r) & (r < 1)
    if not below.any() or not below[0]:
        return NAN
    stop = np.argmin(below) if not below.all() else len(below)
    return float(eta[stop - 1])


@QUANTITIES.register("E4")
def e4(data: RunsData) -> Quantities:
    r = data.usable(data.runs)
    t = data.probe("step_size_scan", r)
    q: Quantities = {}
    if t.empty:
        return q
    t = t[(t["metric"] == "ratio") & (t.get("direction", "gradient") == "gradient")]
    for mode, name in (("batch_stats", "BN"), ("none", "no BN")):
        g = t[t["norm_mode"] == mode]
        q[f"largest helpful step (r < 1), {name}"] = (
            _median([_helpful(s) for _, s in g.groupby("step")]) if len(g) else NAN
        )
        if mode == "batch_stats" and len(g):
            first = g[g["step"] == g["step"].min()]
            fin = first[np.isfinite(first["value"].astype(float))]
            if len(fin):
                i = fin["value"].astype(float).idxmin()
                q["minimum r, BN"] = float(fin.loc[i, "value"])
                q["step size of minimum r, BN"] = float(fin.loc[i, "eta"])
        if mode == "none" and len(g):
            first = g[g["step"] == g["step"].min()]
            j = (np.log(first["eta"].astype(float)) - np.log(5e-3)).abs().idxmin()
            q["r at eta ~ 5e-3, no BN"] = float(first.loc[j, "value"])
    q["BN / no-BN largest helpful step"] = _ratio(
        q.get("largest helpful step (r < 1), BN", NAN), q.get("largest helpful step (r < 1), no BN", NAN)
    )
    return q


@QUANTITIES.register("E5")
def e5(data: RunsData) -> Quantities:
    q: Quantities = {}
    for _, row in data.usable(data.runs).iterrows():
        arr = data.arrays(row, "diverging_step")
        layers = [k[5:] for k in arr if k.startswith("mean/")]
        if not layers or "s" not in arr:
            data.note(
                f"run {row['run_id']} did not diverge: no diverging update, E5's numbers are not measured"
            )
            continue
        with np.errstate(all="ignore"):
            first = np.log10(np.nanmax(np.abs(arr[f"mean/{layers[0]}"][-1])))
            last = np.log10(np.nanmax(np.abs(arr[f"mean/{layers[-1]}"][-1])))
            var = np.log10(np.nanmax(arr[f"var/{layers[-1]}"][-1]))
        q["log10 max |channel mean| at s = 1, first layer"] = float(first)
        q["log10 max |channel mean| at s = 1, last layer"] = float(last)
        q["growth of log10 max |channel mean|, first to last layer (orders)"] = float(last - first)
        q["log10 max channel variance at s = 1, last layer"] = float(var)
        data.note(f"E5 layers: {', '.join(layers)}")
        break
    return q


@QUANTITIES.register("E6")
def e6(data: RunsData) -> Quantities:
    r = _prefer(data.usable(data.runs), "model.init.conv", "xavier")
    t = data.probe("activation_moments", r)
    q: Quantities = {}
    if t.empty:
        return q
    t = t.assign(norm=t["run_id"].map(r.set_index("run_id")["model.norm"]))
    for norm in ("none", "batch"):
        g = t[t["norm"] == norm]
        if g.empty:
            continue
        order = list(dict.fromkeys(g["layer"]))
        m = g[g["metric"] == "log10_abs_mean"].groupby("layer")["value"].mean().reindex(order)
        s = g[g["metric"] == "log10_std"].groupby("layer")["value"].mean().reindex(order)
        if norm == "none":
            q["no-BN log10 |mean| at the last block output"] = float(m.iloc[-1])
            q["no-BN growth of log10 |mean|, first to last block (orders)"] = float(m.iloc[-1] - m.iloc[0])
            q["no-BN growth of log10 std, first to last block (orders)"] = float(s.iloc[-1] - s.iloc[0])
        else:
            q["BN max |log10 std| over block outputs"] = float(s.abs().max())
            q["BN max |log10 |mean|| over block outputs"] = float(m.abs().max())
    return q


@QUANTITIES.register("E7")
def e7(data: RunsData) -> Quantities:
    r = data.usable(data.runs)
    t = data.probe("output_bias", r)
    q: Quantities = {}
    if t.empty:
        return q
    base = _sel(r, model__placement="all")
    if "model.init.balanced_output_bias" in base.columns:
        base = base[~base["model.init.balanced_output_bias"].astype(bool)]
    post = _prefer(base, "model.block", "post")

    def metric(runs: pd.DataFrame, name: str) -> float:
        return _mean(t[t["run_id"].isin(runs["run_id"]) & (t["metric"] == name)]["value"])

    q["top-class share, no BN (post-act)"] = metric(_sel(post, model__norm="none"), "top_class_share")
    q["top-class share, BN (post-act)"] = metric(_sel(post, model__norm="batch"), "top_class_share")
    q["BN / no-BN input dependence of the softmax output"] = _ratio(
        metric(_sel(post, model__norm="batch"), "input_dependence"),
        metric(_sel(post, model__norm="none"), "input_dependence"),
    )
    labels = data.labels(r)
    for i, (_, row) in enumerate(r.iterrows()):
        q[f"top-class share, {labels.iloc[i]}"] = metric(r[r["run_id"] == row["run_id"]], "top_class_share")
    return q


@QUANTITIES.register("E8")
def e8(data: RunsData) -> Quantities:
    r = _prefer(data.usable(data.runs), "model.init.conv", "xavier")
    t = data.probe("kernel_alignment", r)
    q: Quantities = {}
    if t.empty:
        return q
    t = t[t["metric"] == "ratio"].assign(norm=t["run_id"].map(r.set_index("run_id")["model.norm"]))
    for red in ("all", "batch", "spatial"):
        bn = _median(t[(t["norm"] == "batch") & (t["reduce"] == red)]["value"])
        no = _median(t[(t["norm"] == "none") & (t["reduce"] == red)]["value"])
        q[f"BN / no-BN median sum|d| / |sum d| (over {red})"] = _ratio(bn, no)
        if red == "all":
            q["BN median sum|d| / |sum d| (over all)"] = bn
            q["no-BN median sum|d| / |sum d| (over all)"] = no
    return q


@QUANTITIES.register("E9")
def e9(data: RunsData) -> Quantities:
    r = data.usable(data.runs)
    t = data.probe("gradient_spectrum", r)
    q: Quantities = {}
    if t.empty:
        return q
    t = t[t["metric"] == "top1_share"].assign(norm=t["run_id"].map(r.set_index("run_id")["model.norm"]))
    for norm, name in (("none", "no-BN"), ("batch", "BN")):
        for matrix in ("gradient", "activation"):
            q[f"{name} median top-1 share of {matrix} sigma^2"] = _median(
                t[(t["norm"] == norm) & (t["matrix"] == matrix)]["value"]
            )
    q["no-BN / BN median top-1 share"] = _ratio(
        q["no-BN median top-1 share of gradient sigma^2"], q["BN median top-1 share of gradient sigma^2"]
    )
    return q


@QUANTITIES.register("E9b")
def e9b(data: RunsData) -> Quantities:
    r = data.usable(data.runs)
    t = data.probe("gradient_variance", r)
    q: Quantities = {}
    if t.empty:
        return q
    t = t.assign(norm=t["run_id"].map(r.set_index("run_id")["model.norm"]))

    def med(norm: str, metric: str) -> float:
        return _median(t[(t["norm"] == norm) & (t["metric"] == metric)]["value"])

    q["no-BN / BN median intra-minibatch variance"] = _ratio(
        med("none", "intra_batch"), med("batch", "intra_batch")
    )
    q["no-BN / BN median intra-layer variance"] = _ratio(
        med("none", "intra_layer"), med("batch", "intra_layer")
    )
    q["BN median intra-minibatch / intra-layer variance"] = _ratio(
        med("batch", "intra_batch"), med("batch", "intra_layer")
    )
    q["no-BN median intra-minibatch / intra-layer variance"] = _ratio(
        med("none", "intra_batch"), med("none", "intra_layer")
    )
    return q


def _slope(g: pd.DataFrame) -> float:
    """Least-squares slope of the mean value vs depth over the deeper half of the depths."""
    m = g.groupby("depth")["value"].mean()
    m = m[np.isfinite(m.to_numpy(float))]
    if len(m) < 2:
        return NAN
    d = m.index.to_numpy(float)
    keep = d >= np.median(d)
    if keep.sum() < 2:
        keep[:] = True
    return float(np.polyfit(d[keep], m.to_numpy(float)[keep], 1)[0])


@QUANTITIES.register("E10")
def e10(data: RunsData) -> Quantities:
    r = data.usable(data.runs)
    q: Quantities = {}
    s = data.probe("rmt_spectra", r)
    if len(s):
        ks = s[(s["metric"] == "ks") & (s["dist"] == "gaussian")]
        q["max KS distance to Theorem 1 (Gaussian, all M)"] = float(ks["value"].max()) if len(ks) else NAN
        if len(ks):
            data.note(
                f"Theorem 1 at N = {int(ks['n'].iloc[0])}, M = {', '.join(str(int(m)) for m in sorted(ks['m'].unique()))}"
            )
    c = data.probe("rmt_condition", r)
    if len(c):
        c = c[(c["metric"] == "ln_kappa") & (c["dist"] == "gaussian")]
        meas = _slope(c[(c["product"] == "plain") & (c["method"] == "exact")])
        closed = _slope(c[c["method"] == "closed_form"])
        q["ln kappa per factor, measured (Gaussian, plain)"] = meas
        q["ln kappa per factor, closed form lambda_1 - lambda_N"] = closed
        q["measured / closed-form ln kappa per factor"] = _ratio(meas, closed)
        ex = c[c["method"] == "exact"]
        if len(ex):
            deepest = ex["depth"].max()
            q["BN-normalized / plain ln kappa at the deepest product"] = _ratio(
                _mean(ex[(ex["product"] == "normalized") & (ex["depth"] == deepest)]["value"]),
                _mean(ex[(ex["product"] == "plain") & (ex["depth"] == deepest)]["value"]),
            )
    return q


def _lr(t: pd.DataFrame) -> float:
    v = t["max_stable_lr"].to_numpy(float) if len(t) else np.array([])
    v = v[np.isfinite(v) & (v > 0)]
    return float(np.exp(np.mean(np.log(v)))) if len(v) else NAN  # geometric mean over repeats (log-bisection)


def _lr_quantities(data: RunsData, t: pd.DataFrame, q: Quantities) -> None:
    labels = data.labels(t, exclude=("task",)) if len(t) else []
    for label, (_, row) in zip(labels, t.iterrows()):
        q[f"max stable lr, {label}"] = float(row["max_stable_lr"])
        if row["censored"]:
            data.note(f"{label}: the search was censored at its range end (one-sided bound)")


@QUANTITIES.register("E11a")
def e11a(data: RunsData) -> Quantities:
    t = max_lr_table(data.runs, data)
    q: Quantities = {}
    if not len(t):
        return q
    none = t[t["model.norm"] == "none"]
    if len(none):
        depths = sorted(none["model.depth"].unique())
        q["no-BN max stable lr, shallowest / deepest"] = _ratio(
            _lr(none[none["model.depth"] == depths[0]]), _lr(none[none["model.depth"] == depths[-1]])
        )
        deep = t[t["model.depth"] == depths[-1]]
        q["BN / no-BN max stable lr at the deepest depth"] = _ratio(
            _lr(deep[deep["model.norm"] == "batch"]), _lr(deep[deep["model.norm"] == "none"])
        )
    _lr_quantities(data, t, q)
    return q


@QUANTITIES.register("E11b")
def e11b(data: RunsData) -> Quantities:
    q: Quantities = {}
    t = max_lr_table(data.runs, data)
    finals = ("final_prepool", "final_prefc")
    if len(t):
        lr = {p: _lr(t[t["model.placement"] == p]) for p in ("all", "none", *finals)}
        gain = np.log10(lr["all"]) - np.log10(lr["none"]) if lr["all"] > 0 and lr["none"] > 0 else NAN
        shares = [
            (np.log10(lr[p]) - np.log10(lr["none"])) / gain
            for p in finals
            if np.isfinite(gain) and gain != 0 and lr[p] > 0
        ]
        q["share of BN's log10 max-lr gain captured by the best single final norm"] = (
            max(shares) if shares else NAN
        )
        if np.isfinite(gain) and gain == 0:
            data.note("BN and no norm have the same max stable lr: the share of BN's gain is undefined")
        _lr_quantities(data, t, q)
    tr = (
        data.usable(data.runs[data.runs["task"] == "train"])
        if "task" in data.runs.columns
        else pd.DataFrame()
    )
    if len(tr):
        done = tr[tr["state"] == "complete"]
        acc = {
            p: _mean(done[done["model.placement"] == p].get("summary.test_acc", pd.Series(dtype=float))) * 100
            for p in ("all", "none", *finals)
        }
        gain = acc["all"] - acc["none"]
        shares = [
            (acc[p] - acc["none"]) / gain
            for p in finals
            if np.isfinite(acc[p]) and np.isfinite(gain) and gain != 0
        ]
        q["share of BN's test-acc gain (at the spec's lr) captured by the best single final norm"] = (
            max(shares) if shares else NAN
        )
        for p, a in acc.items():
            q[f"test acc, norm: {p} (%)"] = a
    return q


@QUANTITIES.register("E12a")
def e12a(data: RunsData) -> Quantities:
    t = max_lr_table(data.runs, data)
    q: Quantities = {}
    if not len(t):
        return q
    none = _lr(t[t["model.norm"] == "none"])
    others = [n for n in dict.fromkeys(t["model.norm"]) if n not in ("none", "batch")]
    big = [
        _lr(t[t["model.norm"] == n]) >= 10 * none for n in others if np.isfinite(_lr(t[t["model.norm"] == n]))
    ]
    q["share of the other norms with max stable lr >= 10x no norm"] = (
        float(np.mean(big)) if big and np.isfinite(none) else NAN
    )
    q["BN / no-norm max stable lr"] = _ratio(_lr(t[t["model.norm"] == "batch"]), none)
    _lr_quantities(data, t, q)
    return q


@QUANTITIES.register("E12b")
def e12b(data: RunsData) -> Quantities:
    r = data.usable(data.runs)
    q: Quantities = {}
    done = r[r["state"] == "complete"]
    ref = bn_reference(data)
    q["batch size that would match BN's noise scale at lr 1e-4"] = 1e-4 * 128 / 0.1
    if not len(done):
        return q
    acc = pd.to_numeric(done.get("summary.test_acc"), errors="coerce") * 100
    bs = done["optim.batch_size"].astype(int)
    for b, a, (_, row) in zip(bs, acc, done.iterrows()):
        q[f"test acc, |B| {b} (%)"] = float(a)
        q[f"noise scale, |B| {b}"] = noise_scale(row)
    small, large = acc[bs == bs.min()].mean(), acc[bs == bs.max()].mean()
    if ref is None:
        data.note("no BN reference (E1, BN, lr 0.1) in this runs root: the share of the gap is not measured")
        q["share of the BN - no-BN accuracy gap closed by the smallest batch"] = NAN
    else:
        q["BN reference test acc, lr 0.1 (%)"] = ref[1]
        q["share of the BN - no-BN accuracy gap closed by the smallest batch"] = _ratio(
            small - large, ref[1] - large
        )
    return q


@QUANTITIES.register("E12c")
def e12c(data: RunsData) -> Quantities:
    q: Quantities = {}
    r = data.usable(data.runs)
    tr = r[r["task"] == "train"] if "task" in r.columns else r
    t = data.probe("output_bias", tr)
    if len(t):
        for bal, name in ((False, "default"), (True, "balanced")):
            runs = _sel(tr, model__norm="none")
            runs = runs[runs["model.init.balanced_output_bias"].astype(bool) == bal]
            q[f"no-BN top-class share, {name} bias"] = _mean(
                t[t["run_id"].isin(runs["run_id"]) & (t["metric"] == "top_class_share")]["value"]
            )
    lt = max_lr_table(data.runs, data)
    if len(lt):
        none = lt[lt["model.norm"] == "none"]
        bal = none["model.init.balanced_output_bias"].astype(bool)
        q["no-BN max stable lr, balanced / default bias"] = _ratio(_lr(none[bal]), _lr(none[~bal]))
        _lr_quantities(data, lt, q)
    return q


@QUANTITIES.register("E12d")
def e12d(data: RunsData) -> Quantities:
    t = max_lr_table(data.runs, data)
    q: Quantities = {}
    if not len(t):
        return q
    base = t[
        (t["model.init.conv"] == "xavier")
        & ~t["model.fixup"].astype(bool)
        & ~t["model.skipinit"].astype(bool)
    ]
    others = t.drop(base.index)
    best = max((_lr(others.loc[[i]]) for i in others.index), default=NAN)
    q["best other init / xavier max stable lr (no BN)"] = _ratio(best, _lr(base))
    _lr_quantities(data, t, q)
    return q


@QUANTITIES.register("E12e")
def e12e(data: RunsData) -> Quantities:
    r = data.usable(data.runs)
    q: Quantities = {}
    g = data.probe("gradient_geometry", r)
    if len(g):
        f = g[(g["metric"] == "input_independent_fraction") & (g["layer"] == "model")]
        first = f[f["step"] == f["step"].min()]
        q["no-BN / BN input-independent gradient fraction (first probe)"] = _ratio(
            _mean(first[first["norm_mode"] == "none"]["value"]),
            _mean(first[first["norm_mode"] == "batch_stats"]["value"]),
        )
        rad = g[(g["metric"] == "radial_fraction") & (g.get("direction") == "mean_gradient")]
        q["median radial fraction of the mean gradient, BN"] = _median(
            rad[rad["norm_mode"] == "batch_stats"]["value"]
        )
        q["median radial fraction of the mean gradient, no BN"] = _median(
            rad[rad["norm_mode"] == "none"]["value"]
        )
    h = data.probe("hessian_top_eig", r)
    if len(h):
        for mode, name in (("none", "no BN"), ("batch_stats", "BN")):
            hm = h[h["norm_mode"] == mode]
            w = hm.pivot_table(index="step", columns="metric", values="value", aggfunc="first")
            if {"lambda_lr", "limit"} <= set(w.columns):
                ratio = (w["lambda_lr"] / w["limit"]).to_numpy(float)
                ratio = ratio[np.isfinite(ratio)]
                q[f"max lr*lambda_max / 2(1+beta), {name}"] = float(ratio.max()) if len(ratio) else NAN
    return q
