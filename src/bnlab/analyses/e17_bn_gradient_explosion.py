"""E17 · Yang et al. 2019: without skips, BN alone makes gradients explode with depth at initialization, at the
mean-field rate per layer.

Reads the weight_grad_norms rows (ln ||dL/dW_l|| per layer, step 0) of the runs: per run the least-squares
slope of ln ||dL/dW_l|| on the layer index over the hidden layers TRIM+1 .. L-TRIM, rate = -slope (growth per
layer towards the input); per configuration (norm, width, batch size) the mean and standard error over seeds.
The reference configuration is the widest BN net at its largest batch, the small-batch one the widest at its
smallest batch (both read from the runs, i.e. from the spec's grid). The prediction is `mean_field_rate(B)`
(the derivation is the spec's formula)."""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from bnlab.analyses.fake import FakeRoot, probe
from bnlab.analyses.probe_rows import probe_rows
from bnlab.analyses.select import NAN, need_runs
from bnlab.analyses.spec import Spec
from bnlab.errors import UserError
from bnlab.figures.depth_gradients import gradient_explosion
from bnlab.store.runset import RunSet

PROBE = "weight_grad_norms"
TRIM = 5  # weighted layers left out of the fit at each end: the input layer sees raw pixels, the last is the classifier
MIN_FIT = 3  # layers a slope needs
CONFIG = ["norm", "width", "batch_size"]


@lru_cache(maxsize=64)
def mean_field_gain(batch_size: int, samples: int = 200_000, seed: int = 0) -> float:
    """G(B): the mean-field growth of the squared gradient per Linear -> BN -> ReLU layer (spec formula),
    G = E[k(1 - 2/B) + k²/B² - V] / ((B - 3) E[V]) over yhat uniform on the sqrt(B)-sphere orthogonal to 1,
    k = #(yhat > 0), V = batch variance of ReLU(yhat); Monte Carlo with a private generator. NaN for B <= 3
    (E[1/chi²_{B-1}] is infinite)."""
    b = int(batch_size)
    if b <= 3:
        return NAN
    rng = np.random.default_rng(seed)
    num = var = 0.0
    done, chunk = 0, max(1, 2_000_000 // b)
    while done < samples:
        n = min(chunk, samples - done)
        z = rng.standard_normal((n, b))
        z -= z.mean(1, keepdims=True)
        y = z * math.sqrt(b) / np.linalg.norm(z, axis=1, keepdims=True)
        v = np.maximum(y, 0).var(1)
        k = (y > 0).sum(1)
        num += float(np.sum(k * (1 - 2 / b) + k**2 / b**2 - v))
        var += float(v.sum())
        done += n
    return num / ((b - 3) * var)


def mean_field_rate(batch_size: int) -> float:
    """Predicted growth rate of ln ||dL/dW_l|| per layer: ln G(B) / 2."""
    g = mean_field_gain(int(batch_size))
    return 0.5 * math.log(g) if g > 0 else NAN


def _layers(runs: RunSet) -> pd.DataFrame:
    """One row per (run, layer): run_id, norm, width, batch_size, seed, label, layer_index, log_grad_norm."""
    r = runs.usable()
    t = probe_rows(runs, PROBE, r)
    if t.empty:
        return pd.DataFrame()
    t = t[t["step"] == 0] if "step" in t.columns else t
    w = t.pivot_table(index=["run_id", "layer"], columns="metric", values="value", aggfunc="first")
    if not {"log_grad_norm", "depth_index"} <= set(w.columns):
        runs.note(f"{PROBE} rows lack log_grad_norm or depth_index")
        return pd.DataFrame()
    w = w.reset_index()
    cfg = r.set_index("run_id")
    labels = {
        rid: f"{'no BN' if c['model.norm'] == 'none' else 'BN'}, width {c['model.hidden']}, B {c['optim.batch_size']}"
        for rid, c in cfg.iterrows()
    }
    out = pd.DataFrame(
        {
            "run_id": w["run_id"],
            "norm": w["run_id"].map(cfg["model.norm"]),
            "width": w["run_id"].map(cfg["model.hidden"]).astype(float),
            "batch_size": w["run_id"].map(cfg["optim.batch_size"]).astype(float),
            "seed": w["run_id"].map(cfg["train.seed"]),
            "label": w["run_id"].map(labels),
            "layer_index": w["depth_index"].astype(int),
            "log_grad_norm": w["log_grad_norm"].astype(float),
        }
    )
    return out.sort_values(["run_id", "layer_index"]).reset_index(drop=True)


def fit_window(n_layers: int) -> tuple[int, int]:
    """The layer indices (inclusive) the slope is fitted over."""
    return TRIM + 1, n_layers - TRIM


def _run_rates(layers: pd.DataFrame, runs: RunSet) -> pd.DataFrame:
    rows = []
    for rid, g in layers.groupby("run_id", sort=False):
        lo, hi = fit_window(int(g["layer_index"].max()))
        f = g[(g["layer_index"] >= lo) & (g["layer_index"] <= hi) & np.isfinite(g["log_grad_norm"])]
        if len(f) < MIN_FIT:
            runs.note(f"run {rid}: {len(f)} layers in the fit window {lo}..{hi} (< {MIN_FIT}); no rate")
            rate = NAN
        else:
            rate = -float(np.polyfit(f["layer_index"], f["log_grad_norm"], 1)[0])
        first, last = (
            f["log_grad_norm"].iloc[0] if len(f) else NAN,
            f["log_grad_norm"].iloc[-1] if len(f) else NAN,
        )
        rows.append(
            {**g.iloc[0][CONFIG + ["label", "seed"]].to_dict(), "rate": rate, "log_ratio": first - last}
        )
    return pd.DataFrame(rows)


def config_rates(runs: RunSet) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per-layer rows, one row per configuration: norm, width, batch_size, label, rate, se, n, log_ratio)."""
    layers = _layers(runs)
    if layers.empty:
        return layers, pd.DataFrame(columns=[*CONFIG, "label", "rate", "se", "n", "log_ratio"])
    per_run = _run_rates(layers, runs)
    rows = []
    for key, g in per_run.groupby(CONFIG, sort=True):
        v = g["rate"].to_numpy(float)
        v = v[np.isfinite(v)]
        se = float(v.std(ddof=1) / math.sqrt(len(v))) if len(v) >= 2 else NAN
        rows.append(
            {
                **dict(zip(CONFIG, key)),
                "label": g["label"].iloc[0],
                "rate": float(v.mean()) if len(v) else NAN,
                "se": se,
                "n": len(v),
                "log_ratio": float(g["log_ratio"].mean()),
            }
        )
    return layers, pd.DataFrame(rows)


def quantities(runs: RunSet, spec: Spec) -> dict[str, float]:
    q = dict.fromkeys((v.key for v in spec.paper.values), NAN)
    _, c = config_rates(runs)
    bn, nobn = c[c["norm"] != "none"], c[c["norm"] == "none"]
    if len(bn):
        wide = bn[bn["width"] == bn["width"].max()]
        ref = wide.loc[wide["batch_size"].idxmax()]
        small = wide.loc[wide["batch_size"].idxmin()]
        pred = mean_field_rate(int(ref["batch_size"]))
        q.update(
            rate_bn=ref["rate"],
            rate_bn_se=ref["se"],
            rate_bn_predicted=pred,
            rate_bn_minus_predicted=ref["rate"] - pred,
            gradient_ratio_first_over_last_bn=math.exp(ref["log_ratio"]),
        )
        if small["batch_size"] < ref["batch_size"]:
            q.update(
                rate_bn_small_batch=small["rate"],
                rate_bn_small_batch_se=small["se"],
                rate_bn_small_batch_minus_predicted=small["rate"] - mean_field_rate(int(small["batch_size"])),
            )
        else:
            runs.note("the widest BN net was measured at one batch size only: no small-batch test")
        at_ref = bn[bn["batch_size"] == ref["batch_size"]]
        q["rate_bn_narrowest"] = at_ref.loc[at_ref["width"].idxmin(), "rate"]
    if len(nobn):
        n0 = nobn.loc[nobn["width"].idxmax()]
        q.update(rate_nobn=n0["rate"], rate_nobn_se=n0["se"])
    else:
        runs.note("no runs without BN: the control is missing")
    return {k: float(v) for k, v in q.items()}


def explosion(runs: RunSet, spec: Spec) -> Figure:
    """E17: ln ||dL/dW_l|| against layer at init (BN vs no BN, widths, batch sizes) and the rate per layer vs B with the mean-field curve."""
    need_runs(runs, "explosion")
    layers, c = config_rates(runs)
    if layers.empty or c.empty:
        raise UserError(f"no {PROBE} rows")
    sizes = sorted({int(b) for b in c["batch_size"]} | {2**k for k in range(2, 10)})
    theory = pd.DataFrame(
        {"batch_size": [b for b in sizes if b > 3], "rate": [mean_field_rate(b) for b in sizes if b > 3]}
    )
    lo, hi = fit_window(int(layers["layer_index"].max()))
    return gradient_explosion(layers, c, theory, fit_range=(lo, hi))


FIGURES = {"explosion": explosion}


def write_fake(
    root: Path,
    profile: str,
    *,
    offset: float = 0.0,
    nobn_rate: float = 0.0,
    seeds: int = 3,
    spread: float = 0.004,
    depth: int = 20,
) -> None:
    """Synthetic E17 runs: ln ||dL/dW_l|| linear in l with the mean-field rate (+ `offset`) for BN at
    (width 1024, B 256), (1024, 8), (64, 256), and `nobn_rate` without BN; seed-to-seed spread of the rate."""
    r = FakeRoot(root, profile)
    configs = [("batch", 1024, 256), ("batch", 1024, 8), ("batch", 64, 256), ("none", 1024, 256)]
    for norm, width, b in configs:
        for seed in range(seeds):
            base = nobn_rate if norm == "none" else mean_field_rate(b) + offset
            rate = base + spread * (seed - (seeds - 1) / 2)
            d = r.run(
                "E17",
                {
                    "model.name": "mlp",
                    "model.depth": depth,
                    "model.norm": norm,
                    "model.hidden": width,
                    "optim.batch_size": b,
                    "train.seed": seed,
                },
            )
            rows = []
            for i in range(1, depth + 1):
                g = math.exp(-rate * i)
                for m, v in (("grad_norm", g), ("log_grad_norm", -rate * i), ("depth_index", float(i))):
                    rows.append({"metric": m, "value": v, "layer": f"l{i}", "norm_stats": norm})
            probe(d, PROBE, rows)


def fake_runs(root: Path, profile: str) -> str:
    """BN at the mean-field rate (3 seeds, spread 0.004 per layer), no BN flat: reproduced."""
    write_fake(root, profile)
    return "reproduced"
