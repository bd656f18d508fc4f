"""PROBES: name -> probe function. Batch probes take (model, inputs, targets, **options); data probes
take (model, batches, *, ctx, **options). Each entry records which kind it is in PROBE_KIND.

`register_probe` registers the probe wrapped so that its model goes through `norm_stats.unwrap_model`
first (torch.compile, DDP/DataParallel); the wrapper keeps the probe's name, signature and docstring and
is what the probe's module and `bnlab.probes` export, so `bnlab.probes.<name> is PROBES.get(<name>)`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Literal

from bnlab.probes.norm_stats import unwrap_model
from bnlab.registry import Registry

PROBES: Registry[Callable] = Registry("probe")
PROBE_KIND: dict[str, Literal["batch", "data"]] = {}


def register_probe(name: str, kind: Literal["batch", "data"] = "batch") -> Callable[[Callable], Callable]:
    def deco(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def probe(model: Any, *args: Any, **kwargs: Any) -> Any:
            return fn(unwrap_model(model), *args, **kwargs)

        PROBES.register(name)(probe)
        PROBE_KIND[name] = kind
        return probe

    return deco
