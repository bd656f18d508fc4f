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
