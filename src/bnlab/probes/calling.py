"""One calling convention for every registered probe (the wrapper `register_probe` puts around each).

    probe(model, x, y, **options)            one minibatch
    probe(model, [(x, y), ...], **options)   a list of minibatches

A batch probe given a list measures each minibatch on its own (batches are never concatenated: that would
change BN's statistics) and stacks the tables with a `batch` column, arrays keyed "b<i>/<key>". A data
probe given one minibatch sees it as a list of one. `loss_fn=` is accepted by every probe; a data probe's
`ctx` defaults to `ProbeContext()` (step 0, no optimizer), with `loss_fn=` copied into it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd
import torch

from bnlab.errors import UserError
from bnlab.probes.context import ProbeContext
from bnlab.probes.result import ProbeResult


def as_batches(name: str, first: Any, second: Any) -> list[tuple[Any, Any]] | None:
    """The minibatches of a call: None for one minibatch given as (x, y) or x; else the list of pairs."""
    if torch.is_tensor(first):
        return None
    if isinstance(first, Sequence) and not isinstance(first, str):
        items = list(first)
        if len(items) == 2 and all(torch.is_tensor(t) for t in items) and second is None:
            return None  # probe(model, (x, y)): one minibatch given as a pair
        for i, b in enumerate(items):
            if not (isinstance(b, Sequence) and len(b) == 2 and torch.is_tensor(b[0])):
                raise UserError(
                    f"{name}: batches[{i}] is not an (inputs, targets) pair; call {name}(model, x, y) or "
                    f"{name}(model, [(x, y), ...])"
                )
        if second is not None:
            raise UserError(f"{name}: give targets inside the batches list, not as a third argument")
        return [(b[0], b[1]) for b in items]
    raise UserError(
        f"{name}: expected a tensor of inputs or a list of (inputs, targets), got {type(first).__name__}"
    )


def stack_results(results: list[ProbeResult]) -> ProbeResult:
    """Per-minibatch results as one: tables stacked with a `batch` column, arrays keyed "b<i>/<key>"."""
    tables, arrays = [], {}
    for i, r in enumerate(results):
        t = r.table.copy()
        t["batch"] = i
        tables.append(t)
        arrays.update({f"b{i}/{k}": v for k, v in r.arrays.items()})
    table = pd.concat(tables, ignore_index=True)
    table.attrs.update(results[0].table.attrs)
    return ProbeResult(table, arrays, dict(results[0].attrs))


def call_batch_probe(
    fn: Callable, name: str, model: Any, first: Any, second: Any = None, /, *, ctx: Any = None, **kw: Any
) -> ProbeResult:
    """A batch probe on one minibatch or on each of a list (see the module docstring). `ctx` is accepted
    so that every probe takes the same arguments; only its loss_fn is used (when `loss_fn=` is not given)."""
    if second is None and "targets" in kw:
        second = kw.pop("targets")
    if ctx is not None and kw.get("loss_fn") is None and getattr(ctx, "loss_fn", None) is not None:
        kw["loss_fn"] = ctx.loss_fn
    batches = as_batches(name, first, second)
    if batches is None:
        if not torch.is_tensor(first):
            first, second = first
        return fn(model, first, second, **kw)
    if not batches:
        raise UserError(f"{name} needs at least one (inputs, targets) minibatch, got an empty list")
    results = [fn(model, x, y, **kw) for x, y in batches]
    return results[0] if len(results) == 1 else stack_results(results)


def call_data_probe(
    fn: Callable,
    name: str,
    model: Any,
    first: Any = (),
    second: Any = None,
    /,
    *,
    ctx: ProbeContext | None = None,
    loss_fn: Any = None,
    **kw: Any,
) -> ProbeResult:
    """A data probe on a list of minibatches (one minibatch counts as a list of one), `ctx` defaulting to
    ProbeContext() and `loss_fn=` copied into it."""
    if "batches" in kw:
        first = kw.pop("batches")
    batches = as_batches(name, first, second)
    if batches is None:
        batches = [tuple(first)] if not torch.is_tensor(first) else [(first, second)]
    ctx = ctx if ctx is not None else ProbeContext()
    if loss_fn is not None:
        ctx = dataclasses.replace(ctx, loss_fn=loss_fn)
    return fn(model, batches, ctx=ctx, **kw)
