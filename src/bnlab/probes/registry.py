"""PROBES: name -> probe function. Every probe is called as `probe(model, x, y, **options)` or
`probe(model, [(x, y), ...], **options)` (`probes.calling`); a batch probe measures one minibatch at a
time, a data probe (with `ctx=`) needs several or the training state. PROBE_KIND records which kind.

`register_probe` registers the probe wrapped so that its model goes through `norm_stats.unwrap_model`
first (torch.compile, DDP/DataParallel) and its arguments through `probes.calling`; the wrapper keeps the
probe's name, signature and docstring and is what the probe's module and `bnlab.probes` export, so
`bnlab.probes.<name> is PROBES.get(<name>)`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any, Literal

from bnlab.probes.calling import call_batch_probe, call_data_probe
from bnlab.probes.norm_stats import unwrap_model
from bnlab.registry import Registry


class ProbeRegistry(Registry[Callable]):
    """The registry of probes: an unknown name's error suggests the closest probe names."""


def first_sentence(doc: str | None) -> str:
    """The first sentence of a docstring (its first paragraph's lines joined), for `bnlab ls probes`."""
    para = " ".join(line.strip() for line in (doc or "").strip().split("\n\n")[0].splitlines())
    m = re.search(r"(?<=[.:;])\s+(?=[A-Z`(])|(?<=\.)\s", para)
    return para[: m.start()].strip() if m else para


PROBES: ProbeRegistry = ProbeRegistry("probe", lister="bnlab ls probes")
PROBE_KIND: dict[str, Literal["batch", "data"]] = {}


def register_probe(
    fn_or_name: Callable | str | None = None,
    kind: Literal["batch", "data"] = "batch",
    summary: str | None = None,
) -> Any:
    """Register a probe of `kind` under its function's name: `@register_probe` or
    `@register_probe(kind="data")`. Its one-line description for `bnlab ls probes` is `summary`, by default
    the docstring's first sentence. `@register_probe("name", ...)` registers under another name."""
    if callable(fn_or_name):
        return _register(fn_or_name, fn_or_name.__name__, kind, summary)
    return lambda fn: _register(fn, fn_or_name or fn.__name__, kind, summary)


def _register(fn: Callable, name: str, kind: Literal["batch", "data"], summary: str | None) -> Callable:
    call = call_data_probe if kind == "data" else call_batch_probe

    @functools.wraps(fn)
    def probe(model: Any, *args: Any, **kwargs: Any) -> Any:
        return call(fn, name, unwrap_model(model), *args, **kwargs)

    PROBES.register(name, doc=summary or first_sentence(fn.__doc__))(probe)
    PROBE_KIND[name] = kind
    return probe
