"""Channel moments of block outputs at initialization (E5/E6)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from torch import Tensor, nn

from bnlab.errors import UserError
from bnlab.probes.capture import (
    LossFn,
    NormStats,
    capture,
    guard,
    paper_layer_map,
    paper_layer_of,
    set_norm_stats,
)
from bnlab.probes.registry import register_probe
from bnlab.probes.result import ProbeResult


def block_modules(model: nn.Module, modules: Iterable[str | nn.Module] | None) -> list[tuple[str, nn.Module]]:
    """`modules=` (names or modules), else the model's `block_outputs()`, else its top-level children."""
    by_name = dict(model.named_modules())
    if modules is None:
        fn = getattr(model, "block_outputs", None)
        modules = list(fn()) if callable(fn) else [n for n, _ in model.named_children()]
    by_id = {id(m): n for n, m in by_name.items()}
    out = []
    for m in modules:
        if isinstance(m, str):
            if m not in by_name:
                raise UserError(f"{m!r} is not a module name of this model; see model.named_modules()")
            out.append((m, by_name[m]))
        elif id(m) in by_id:
            out.append((by_id[id(m)], m))
        else:
            raise UserError("modules= holds a module that is not part of this model; pass its name")
    return out


def channel_moments(y: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Each channel's (dim 1) mean and population std over every other dim (batch, x, y), in float64."""
    c = y.detach().double().transpose(0, 1).reshape(y.shape[1], -1)
    return c.mean(1).cpu().numpy(), c.std(1, correction=0).cpu().numpy()


@register_probe("activation_moments")
def activation_moments(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor | None = None,
    *,
    loss_fn: LossFn | None = None,
    modules: Iterable[str | nn.Module] | None = None,
    norm_stats: NormStats = "batch",
) -> ProbeResult:
    """For each block output, every channel's mean and std over (batch, x, y) (arrays `<layer>/mean`,
    `<layer>/std`); metrics `log10_abs_mean`, `log10_std` averaged over channels and their spread over
    channels (`log10_abs_mean_sd`, `log10_std_sd`, population std). A block's paper layer is the first paper
    layer inside it ("activation at layer L" = output of the block containing L). Forward only."""
    mods = block_modules(model, modules)
    with guard(model):
        norm_mode = set_norm_stats(model, norm_stats)
        with torch.no_grad(), capture(mods) as cap:
            model(inputs)
    paper = paper_layer_map(model)
    rows, arrays = [], {}
    for n, _ in mods:
        if n not in cap.outputs:
            raise UserError(f"module {n} was not called in the forward pass; pass other modules=")
        mean, std = channel_moments(cap.outputs[n])
        arrays[f"{n}/mean"], arrays[f"{n}/std"] = mean, std
        with np.errstate(divide="ignore"):
            lm, ls = np.log10(np.abs(mean)), np.log10(std)
        values = {
            "log10_abs_mean": lm.mean(),
            "log10_abs_mean_sd": lm.std(),
            "log10_std": ls.mean(),
            "log10_std_sd": ls.std(),
        }
        for metric, value in values.items():
            rows.append(
                {
                    "probe": "activation_moments",
                    "layer": n,
                    "paper_layer": paper_layer_of(n, paper),
                    "metric": metric,
                    "value": float(value),
                }
            )
    return ProbeResult.from_rows(rows, arrays, norm_mode=norm_mode)
