"""Apply one probe to fixed minibatches: the one path the trainer (`training.loop`) and `bnlab probe`
(`cli.probe`, which builds the model from a run's config or checkpoint) share. Probes never import
bnlab.store or bnlab.training."""

from __future__ import annotations

from typing import Any

import torch

from bnlab.config import Config
from bnlab.probes.calling import stack_results
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
    minibatch, its tables stacked with a `batch` column and its arrays keyed "b<i>/<key>" (each minibatch
    guarded on its own, so one non-finite minibatch does not hide the others)."""
    fn = PROBES.get(name)
    if PROBE_KIND.get(name) == "data":
        return call_probe(fn, name, model, batches, ctx=ctx or ProbeContext(), **options)
    results = [call_probe(fn, name, model, x, y, **options) for x, y in batches]
    return results[0] if len(results) == 1 else stack_results(results)
