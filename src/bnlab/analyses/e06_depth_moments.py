"""E6 · Fig. 5: at initialization, without BN the channel means and stds grow exponentially with depth;
with BN they stay bounded.

Reads the activation_moments probe at the block outputs the probe measures (no grid values: the runs are
BN vs no BN, the paper's Xavier init preferred where the grid has several inits)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from bnlab.analyses.fake import FakeRoot, probe
from bnlab.analyses.probe_rows import need_probe, probe_rows
from bnlab.analyses.select import NAN, prefer
from bnlab.analyses.spec import Spec
from bnlab.errors import UserError
from bnlab.figures.init_probes import depth_profile as depth_profile_figure
from bnlab.store.runset import RunSet

PROBE = "activation_moments"


def quantities(runs: RunSet, spec: Spec) -> dict[str, float]:
    r = prefer(runs.usable(), "model.init.conv", "xavier")
    t = probe_rows(runs, PROBE, r)
    q = dict.fromkeys(
        (
            "nobn_log10_mean_last_block",
            "nobn_log10_mean_growth",
            "nobn_log10_std_growth",
            "bn_max_abs_log10_std",
            "bn_max_abs_log10_mean",
        ),
        NAN,
    )
    if t.empty:
        return q
    for norm in ("none", "batch"):
        g = t[t["norm"] == norm]
        if g.empty:
            runs.note(f"no {PROBE} rows of {'no-BN' if norm == 'none' else 'BN'} runs")
            continue
        order = list(dict.fromkeys(g["layer"]))
        m = g[g["metric"] == "log10_abs_mean"].groupby("layer")["value"].mean().reindex(order)
        s = g[g["metric"] == "log10_std"].groupby("layer")["value"].mean().reindex(order)
        if norm == "none":
            q["nobn_log10_mean_last_block"] = float(m.iloc[-1])
            q["nobn_log10_mean_growth"] = float(m.iloc[-1] - m.iloc[0])
            q["nobn_log10_std_growth"] = float(s.iloc[-1] - s.iloc[0])
        else:
            q["bn_max_abs_log10_std"] = float(s.abs().max())
            q["bn_max_abs_log10_mean"] = float(m.abs().max())
    return q


def depth_profile(runs: RunSet, spec: Spec) -> Figure:
    """E6 / Fig. 5: log10 |channel mean| and log10 std vs depth at init, BN vs no BN (bnlab.figures.init_probes)."""
    t = need_probe(runs, PROBE, "depth_profile")
    tables: dict[str, pd.DataFrame] = {}
    for label, g in t.groupby("label", sort=False):
        tables[str(label)] = runs.finite(g, "value", f"{label} activation moments")
    if not tables:
        raise UserError(f"no {PROBE} probe rows")
    return depth_profile_figure(tables)


FIGURES = {"depth_profile": depth_profile}


def fake_runs(root: Path, profile: str) -> str:
    """Four block outputs; no BN grows by 3 orders (mean and std) from first to last, BN stays at 10^0:
    reproduced."""
    r = FakeRoot(root, profile)
    for norm, growth in (("batch", 0.0), ("none", 3.0)):
        d = r.run("E6", {"model.norm": norm})
        rows = []
        for i, pl in enumerate((6, 18, 30, 42)):  # block outputs as the paper numbers them
            v = growth * i / 3
            rows += [
                {"metric": m, "value": val, "layer": f"block{i}", "paper_layer": pl, "norm_stats": norm}
                for m, val in (
                    ("log10_abs_mean", v),
                    ("log10_abs_mean_sd", 0.1),
                    ("log10_std", v),
                    ("log10_std_sd", 0.1),
                )
            ]
        probe(d, PROBE, rows)
    return "reproduced"
