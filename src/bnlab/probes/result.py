"""ProbeResult: what every probe returns (schema in DESIGN.md)."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

COLUMNS = ["probe", "layer", "paper_layer", "metric", "value"]
# the pre-0.x attribute norm_mode and its values, accepted by from_rows with a DeprecationWarning
_OLD_NORM_MODE = {"batch_stats": "batch", "running_stats": "running", "none": "none"}


def metric_rows(
    probe: str, layer: str, paper_layer: int | None, values: Mapping[str, object], **keys: object
) -> list[dict]:
    """One layer's table rows: one per metric of `values`, with the probe's key columns `keys` (e.g. reduce=)."""
    return [
        {"probe": probe, "layer": layer, "paper_layer": paper_layer, **keys, "metric": m, "value": v}
        for m, v in values.items()
    ]


@dataclass
class ProbeResult:
    """table: one row per (layer, metric[, key columns]); arrays: named numpy arrays.

    table columns: probe, layer, paper_layer (Int64, <NA> if none), metric, value, plus probe-specific
    key columns; `attrs` holds norm_stats (batch | frozen | running, or "none" when the model has no
    normalization layer), step, and anything else the probe wants recorded (e.g. per_example mode).
    A run's probe .jsonl rows carry the scalar attrs as columns.
    """

    table: pd.DataFrame
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    attrs: dict[str, object] = field(default_factory=dict)

    @staticmethod
    def from_rows(
        rows: list[dict], arrays: dict[str, np.ndarray] | None = None, **attrs: object
    ) -> ProbeResult:
        if "norm_mode" in attrs:
            old = attrs.pop("norm_mode")
            warnings.warn(
                "ProbeResult attribute norm_mode is deprecated; pass norm_stats= (batch | frozen | running | "
                "none)",
                DeprecationWarning,
                stacklevel=2,
            )
            attrs.setdefault("norm_stats", _OLD_NORM_MODE.get(str(old), old))
        df = pd.DataFrame(rows)
        for c in COLUMNS:
            if c not in df.columns:
                df[c] = pd.NA
        df["paper_layer"] = df["paper_layer"].astype("Int64")
        df["value"] = df["value"].astype(float)
        extra = [c for c in df.columns if c not in COLUMNS]
        df = df[COLUMNS + extra]
        df.attrs.update(attrs)
        return ProbeResult(df, dict(arrays or {}), dict(attrs))

    def key_columns(self) -> list[str]:
        """The probe's key columns (e.g. reduce, batch, direction, eta): every column except the fixed ones
        and the `finite` flag."""
        return [c for c in self.table.columns if c not in COLUMNS and c != "finite"]

    def value(self, metric: str, layer: str | int | None = None, **keys: object) -> float:
        """One number: the row of `metric` at `layer` (module name, or a paper layer number; optional when
        the metric has one layer) and key columns `keys` (e.g. reduce="all", batch=0). A selection that
        matches no row or several is a UserError naming the choices."""
        from bnlab.errors import UserError

        t = self.table
        if metric not in set(t["metric"]):
            raise UserError(f"no metric {metric!r}; this result has: {', '.join(dict.fromkeys(t['metric']))}")
        t = t[t["metric"] == metric]
        if layer is not None:
            col = "paper_layer" if isinstance(layer, int) and not isinstance(layer, bool) else "layer"
            sel = t[t[col] == layer]
            if sel.empty:
                raise UserError(
                    f"{metric!r} has no layer {layer!r}; layers: {', '.join(map(str, dict.fromkeys(t['layer'])))}"
                )
            t = sel
        for k, v in keys.items():
            if k not in t.columns:
                raise UserError(
                    f"no key column {k!r}; key columns: {', '.join(self.key_columns()) or 'none'}"
                )
            t = t[t[k] == v]
        if len(t) != 1:
            free = [c for c in ["layer", *self.key_columns()] if c in t.columns and t[c].nunique() > 1]
            raise UserError(
                f"{metric!r} selects {len(t)} rows, not 1; narrow it with "
                + (
                    ", ".join(f"{c}= (one of {sorted(map(str, t[c].unique()))[:6]})" for c in free)
                    or "other keys"
                )
            )
        return float(t["value"].iloc[0])

    def wide(self) -> pd.DataFrame:
        """The table with one column per metric: one row per (layer, key columns), e.g.
        `r.wide().loc["conv1", "ratio"]` when there are no key columns."""
        index = ["layer", *[c for c in self.key_columns() if self.table[c].nunique(dropna=False) > 1]]
        t = self.table.copy()
        for c in index:
            t[c] = t[c].astype(object).where(t[c].notna(), "")
        w = t.pivot_table(index=index, columns="metric", values="value", aggfunc="first", sort=False)
        w.columns.name = None
        return w
