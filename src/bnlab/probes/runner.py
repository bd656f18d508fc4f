"""Apply one probe to fixed minibatches: the one path the trainer (`training.loop`) and `bnlab probe`
(`cli.probe`, which builds the model from a run's config or checkpoint) share. Probes never import
bnlab.store or bnlab.training."""

from __future__ import annotations

from typing import Any

import torch

from bnlab.config import Config
from bnlab.probes.context import ProbeContext
from bnlab.probes.guard import call_probe
from bnlab.probes.registry import PROBE_KIND, PROBES
from bnlab.probes.result import ProbeResult


def probe_batch_seed(cfg: Config) -> int:
    """Probes see fixed minibatches: the same images at every step of a run, seeded by the run's seed."""
    return cfg.train.seed + 104729


def apply_probe(
    name: str, model: torch.nn.Module, batches: list, ctx: ProbeContext | None, options: dict[str, Any]
) -> ProbeResult:
    """Run probe `name` on `batches`: a data probe once on all of them (with `ctx`), a batch probe once per
    minibatch, its tables stacked with a `batch` column and its arrays keyed "b<i>/<key>"."""
    fn = PROBES.get(name)
    if PROBE_KIND.get(name) == "data":
        return call_probe(fn, name, model, batches, ctx=ctx or ProbeContext(), **options)
    results = [call_probe(fn, name, model, x, y, **options) for x, y in batches]
    if len(results) == 1:
        return results[0]
    import pandas as pd

    tables = []
    arrays: dict[str, Any] = {}
    for i, r in enumerate(results):
        t = r.table.copy()
        t["batch"] = i
        tables.append(t)
        arrays.update({f"b{i}/{k}": v for k, v in r.arrays.items()})
    return ProbeResult(pd.concat(tables, ignore_index=True), arrays, dict(results[0].attrs))
