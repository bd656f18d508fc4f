"""ProbeResult: what every probe returns (schema in DESIGN.md)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

COLUMNS = ["probe", "layer", "paper_layer", "metric", "value"]


@dataclass
class ProbeResult:
    """table: one row per (layer, metric[, key columns]); arrays: named numpy arrays.

    table columns: probe, layer, paper_layer (Int64, <NA> if none), metric, value, plus probe-specific
    key columns; `attrs` holds norm_mode ("batch_stats" | "running_stats" | "none"), step, and anything
    else the probe wants recorded (e.g. per_example mode).
    """

    table: pd.DataFrame
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    attrs: dict[str, object] = field(default_factory=dict)

    @staticmethod
    def from_rows(
        rows: list[dict], arrays: dict[str, np.ndarray] | None = None, **attrs: object
    ) -> ProbeResult:
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
