"""PROBES: name -> probe function. Batch probes take (model, inputs, targets, **options); data probes
take (model, batches, *, ctx, **options). Each entry records which kind it is in PROBE_KIND."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from bnlab.registry import Registry

PROBES: Registry[Callable] = Registry("probe")
PROBE_KIND: dict[str, Literal["batch", "data"]] = {}


def register_probe(name: str, kind: Literal["batch", "data"] = "batch") -> Callable[[Callable], Callable]:
    def deco(fn: Callable) -> Callable:
        PROBES.register(name)(fn)
        PROBE_KIND[name] = kind
        return fn

    return deco
