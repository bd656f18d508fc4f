"""Probes on a diverged or overflowing network: rows marked non-finite, never a crash.

`call_probe(fn, model, *args, **kw)` runs a probe; its table gains a boolean column `finite`. If the probe
raises while the network's parameters or outputs are non-finite (an SVD of NaNs, a histogram of infs),
the result is one row per probe with metric "nonfinite", value NaN and the reason, instead of an
exception. An exception on a finite network is a bug and propagates.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from bnlab.errors import UserError
from bnlab.probes.result import ProbeResult

# keyword arguments a caller (the runner, a Monitor) passes, not options a user sets
_CALLER_KEYWORDS = ("ctx", "loss_fn")


def probe_options(fn: Callable[..., Any]) -> list[str] | None:
    """The option names probe `fn` accepts (its keyword-only parameters), or None if it takes **kwargs."""
    params = inspect.signature(fn).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return [
        p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name not in _CALLER_KEYWORDS
    ]


def check_options(fn: Callable[..., Any], name: str, options: Mapping[str, Any]) -> None:
    """A UserError (one sentence naming the valid options) for an option probe `name` does not have."""
    valid = probe_options(fn)
    if valid is None:
        return
    unknown = [k for k in options if k not in valid and k not in _CALLER_KEYWORDS]
    if unknown:
        raise UserError(
            f"probe {name!r} has no option {unknown[0]!r}; its options are: {', '.join(valid) or 'none'}"
        )


def network_is_finite(model: nn.Module, inputs: torch.Tensor | None = None) -> bool:
    for p in model.parameters():
        if not torch.isfinite(p).all():
            return False
    if inputs is None:
        return True
    was = model.training
    try:
        with torch.no_grad():
            model.eval()  # eval mode: the check must not touch BN running statistics
            out = model(inputs)
        return bool(torch.isfinite(out).all())
    finally:
        model.train(was)


def mark_finite(result: ProbeResult) -> ProbeResult:
    vals = result.table["value"].to_numpy(dtype=float)
    result.table["finite"] = np.isfinite(vals)
    return result


def call_probe(
    fn: Callable[..., ProbeResult], name: str, model: nn.Module, first: Any, *args: Any, **kw: Any
) -> ProbeResult:
    """Run probe `fn(model, first, *args, **kw)`; see the module docstring."""
    check_options(fn, name, kw)
    try:
        return mark_finite(fn(model, first, *args, **kw))
    except Exception as e:  # noqa: BLE001 - only swallowed when the network itself is non-finite
        x = first if torch.is_tensor(first) else (first[0][0] if first else None)
        if network_is_finite(model, x):
            raise
        res = ProbeResult.from_rows(
            [
                {
                    "probe": name,
                    "layer": "model",
                    "metric": "nonfinite",
                    "value": math.nan,
                    "reason": f"{type(e).__name__}: {str(e)[:160]}",
                }
            ],
            norm_stats="none",
        )
        res.table["finite"] = False
        res.attrs["nonfinite"] = True
        return res
