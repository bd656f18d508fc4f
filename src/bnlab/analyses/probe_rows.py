"""The rows of one probe of an experiment's runs, as the analyses read them: for a quantity, each row with
its run's model.norm (a note when there are none); for a figure, required (UserError: "not drawn")."""

from __future__ import annotations

import pandas as pd

from bnlab.analyses.select import need_runs
from bnlab.errors import UserError
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
