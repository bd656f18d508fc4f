"""The rows of one probe of an experiment's runs, as the analyses read them: for a quantity, each row with
its run's model.norm (a note when there are none); for a figure, required (UserError: "not drawn"); for a
per-block probe, each layer's block index and the mean ± SE over runs that a depth-curve figure draws, and
that figure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd
from matplotlib.figure import Figure

from bnlab.analyses.select import need_runs
from bnlab.errors import UserError
from bnlab.figures.depth_curves import depth_curves
from bnlab.store.runset import RunSet


def probe_rows(runs: RunSet, name: str, r: pd.DataFrame, metric: str | None = None) -> pd.DataFrame:
    """The rows of probe `name` of the runs `r` (only those of `metric` if given), each with its run's
    model.norm as column `norm`; empty, and a note says so, when the runs have none."""
    t = runs.probe(name, r)
    if t.empty:
        runs.note(f"no {name} probe rows")
        return t
    norm = t["run_id"].map(r.set_index("run_id")["model.norm"])
    return (t if metric is None else t[t["metric"] == metric]).assign(norm=norm)


def need_probe(runs: RunSet, name: str, what: str) -> pd.DataFrame:
    """The rows of probe `name` of the usable runs; UserError ("not drawn") when there are no usable runs
    (`what` names the figure) or no rows."""
    t = runs.probe(name, need_runs(runs, what))
    if t.empty:
        raise UserError(f"no {name} probe rows")
    return t


def with_block_index(t: pd.DataFrame) -> pd.DataFrame:
    """`t` with column `block`: each layer's 1-based position in its run's rows (the probe's layer order)."""
    order = t.drop_duplicates(["run_id", "layer"])[["run_id", "layer"]]
    order = order.assign(block=order.groupby("run_id").cumcount() + 1)
    return t.merge(order, on=["run_id", "layer"])


def block_mean_se(
    g: pd.DataFrame,
    by: Sequence[str],
    label: tuple[str, Mapping[str, str]],
    row: tuple[str, Mapping[str, str]],
) -> tuple[pd.DataFrame, list[str]]:
    """depth_curves' table from one row per run, block and metric (`g`: columns `by`, block, metric, value):
    the mean and standard error over runs per (*by, block, metric), grouped in `by`'s order (it sets the
    order in which labels first appear, hence their colours), with columns `label` and `row`: the values of
    the columns `label[0]` and `row[0]` named by their mappings (a value not named: itself); and the row
    names in the order they first appear."""
    s = g.groupby([*by, "block", "metric"])["value"].agg(["mean", "sem"]).reset_index()
    s = s.rename(columns={"sem": "se"})
    (lcol, lnames), (rcol, rnames) = label, row
    s["label"] = s[lcol].map(lambda v: lnames.get(v, str(v)))
    s["row"] = s[rcol].map(lambda v: rnames.get(v, str(v)))
    return s, list(dict.fromkeys(s["row"]))


def block_curves(
    g: pd.DataFrame,
    name: str,
    by: Sequence[str],
    label: tuple[str, Mapping[str, str]],
    row: tuple[str, Mapping[str, str]],
    panels: Sequence[tuple[str, str, str]],
    **text: str,
) -> Figure:
    """The depth-curve figure of probe `name`'s per-block table `g` (as `block_mean_se` takes it): one line
    per `label` value with its ±SE band, one row of `panels` per `row` value; `text`: depth_curves' suptitle,
    xlabel and note. UserError when `g` is empty."""
    if g.empty:
        raise UserError(f"no {name} rows")
    s, rows = block_mean_se(g, by, label=label, row=row)
    return depth_curves(s, panels, rows=rows, **text)
