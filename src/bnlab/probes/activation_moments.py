"""Channel moments of block outputs at initialization (E5/E6)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch import Tensor, nn

from bnlab.errors import UserError
from bnlab.probes.capture import (
    LossFn,
    capture,
    guard,
    paper_layer_map,
    paper_layer_of,
    restore_buffers,
    snapshot_buffers,
)
from bnlab.probes.norm_stats import NormStats, norm_stats_mode
from bnlab.probes.registry import register_probe
from bnlab.probes.result import ProbeResult, metric_rows


def block_modules(model: nn.Module, modules: Iterable[str | nn.Module] | None) -> list[tuple[str, nn.Module]]:
    """`modules=` (names or modules), else the model's `block_outputs()`, else [] (the caller then takes the
    outermost modules called in the forward pass: `called_blocks`)."""
    by_name = dict(model.named_modules())
    if modules is None:
        fn = getattr(model, "block_outputs", None)
        if not callable(fn):
            return []
        modules = list(fn())
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


def outermost_called(model: nn.Module, called: set[int]) -> list[tuple[str, nn.Module]]:
    """The outermost submodules whose ids are in `called`, in registration order: a child that was called
    is taken, one that was not (a ModuleDict/ModuleList, or any container the forward only iterates) is
    looked inside."""
    out: list[tuple[str, nn.Module]] = []

    def walk(prefix: str, parent: nn.Module) -> None:
        for name, child in parent.named_children():
            full = f"{prefix}.{name}" if prefix else name
            if id(child) in called:
                out.append((full, child))
            else:
                walk(full, child)

    walk("", model)
    return out


@contextmanager
def _record_calls(model: nn.Module) -> Iterator[set[int]]:
    called: set[int] = set()
    hooks = [
        m.register_forward_pre_hook(lambda mod, args: called.add(id(mod)))
        for m in model.modules()
        if m is not model
    ]
    try:
        yield called
    finally:
        for h in hooks:
            h.remove()


def _forward_blocks(model: nn.Module, inputs: Tensor, mods: list[tuple[str, nn.Module]]) -> tuple[list, dict]:
    """One no-grad forward capturing `mods` (default: the top-level children). When a default child was
    never called, the forward is repeated (buffers put back first, so it sees the same running statistics)
    capturing the outermost modules that were called."""
    default = not mods
    saved = snapshot_buffers(model)
    if default:
        mods = list(model.named_children())
    with torch.no_grad(), capture(mods) as cap, _record_calls(model) as called:
        model(inputs)
    if default and any(id(m) not in called for _, m in mods):
        mods = outermost_called(model, called)
        restore_buffers(saved)
        with torch.no_grad(), capture(mods) as cap:
            model(inputs)
    return mods, cap.outputs


def forward_block_outputs(
    model: nn.Module, inputs: Tensor, modules: Iterable[str | nn.Module] | None, norm_stats: NormStats
) -> tuple[str, list[tuple[str, Tensor]]]:
    """The block-output probes' shared step: one guarded no-grad forward in `norm_stats` mode, returning the
    statistics label and (block name, output) for each block (`modules=`, else the model's
    `block_outputs()`, else the outermost modules called: `_forward_blocks`). A block the forward did not
    call is an error naming it."""
    with guard(model), norm_stats_mode(model, norm_stats) as stats:
        mods, outputs = _forward_blocks(model, inputs, block_modules(model, modules))
    for n, _ in mods:
        if n not in outputs:
            raise UserError(f"module {n} was not called in the forward pass; pass other modules=")
    return stats, [(n, outputs[n]) for n, _ in mods]


def channel_moments(y: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Each channel's (dim 1) mean and population std over every other dim (batch, x, y), in float64."""
    c = y.detach().double().transpose(0, 1).reshape(y.shape[1], -1)
    return c.mean(1).cpu().numpy(), c.std(1, correction=0).cpu().numpy()


@register_probe
def activation_moments(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor | None = None,
    *,
    loss_fn: LossFn | None = None,
    modules: Iterable[str | nn.Module] | None = None,
    norm_stats: NormStats = "batch",
) -> ProbeResult:
    """Per block output: each channel's mean and std over (batch, x, y), summarised as log10 mean/std over channels (E6).

    For each block output (`modules=`, else the model's `block_outputs()`, else the outermost modules
    called in the forward pass: containers that are never called, like a ModuleDict, are looked inside),
    every channel's mean and std over (batch, x, y) (arrays `<layer>/mean`,
    `<layer>/std`); metrics `log10_abs_mean`, `log10_std` averaged over channels and their spread over
    channels (`log10_abs_mean_sd`, `log10_std_sd`, population std). A block's paper layer is the first paper
    layer inside it ("activation at layer L" = output of the block containing L). Forward only."""
    stats, blocks = forward_block_outputs(model, inputs, modules, norm_stats)
    return moments_result(model, stats, [(n, *channel_moments(y)) for n, y in blocks])


def moments_result(
    model: nn.Module, stats: str, moments: list[tuple[str, np.ndarray, np.ndarray]]
) -> ProbeResult:
    """activation_moments' result from each block's (name, channel means, channel stds) (`channel_moments`),
    in block order; also used by a Monitor that takes the moments from the user's own forward."""
    paper = paper_layer_map(model)
    rows, arrays = [], {}
    for n, mean, std in moments:
        arrays[f"{n}/mean"], arrays[f"{n}/std"] = mean, std
        with np.errstate(divide="ignore"):
            lm, ls = np.log10(np.abs(mean)), np.log10(std)
        values = {
            "log10_abs_mean": lm.mean(),
            "log10_abs_mean_sd": lm.std(),
            "log10_std": ls.mean(),
            "log10_std_sd": ls.std(),
        }
        rows += metric_rows("activation_moments", n, paper_layer_of(n, paper), values)
    return ProbeResult.from_rows(rows, arrays, norm_stats=stats)
