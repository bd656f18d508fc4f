"""Signal propagation plots at initialization (E15; De & Smith 2020, Brock, De & Smith 2021): per residual
block, the channel moments of the residual stream and the variance of the residual branch against the skip."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager

import torch
from torch import Tensor, nn

from bnlab.errors import UserError
from bnlab.probes.activation_moments import block_modules
from bnlab.probes.capture import LossFn, guard, paper_layer_map, paper_layer_of
from bnlab.probes.norm_stats import NormStats, norm_stats_mode
from bnlab.probes.registry import register_probe
from bnlab.probes.result import ProbeResult, metric_rows

# an activation called last in a block is applied after the add (post-activation blocks)
ACTIVATIONS = (nn.ReLU, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.Softplus, nn.Mish)


def channel_stats(y: Tensor) -> tuple[float, float]:
    """(average over channels of the squared channel mean, average over channels of the channel variance),
    channels = dim 1, statistics over every other dim (batch, x, y), population variance, in float64."""
    c = y.detach().double().transpose(0, 1).reshape(y.shape[1], -1)
    return float((c.mean(1) ** 2).mean()), float(c.var(1, correction=0).mean())


@contextmanager
def _record(block: nn.Module) -> Iterator[dict]:
    """The block's input and output and, in call order, each direct child's (name, input, output), copied."""
    rec: dict = {"calls": []}
    handles = [
        block.register_forward_pre_hook(lambda m, a: rec.setdefault("input", a[0].detach().clone())),
        block.register_forward_hook(lambda m, a, o: rec.__setitem__("output", o.detach().clone())),
    ]
    for name, child in block.named_children():
        handles.append(
            child.register_forward_hook(
                lambda m, a, o, name=name: rec["calls"].append(
                    (name, m, a[0].detach().clone(), o.detach().clone())
                )
            )
        )
    try:
        yield rec
    finally:
        for h in handles:
            h.remove()


def residual_parts(name: str, rec: dict, skip_name: str = "shortcut") -> tuple[Tensor, Tensor]:
    """(skip, sum) of one block's call: skip = the output of its `skip_name` child when called, else the
    block's input (identity); sum = the input of the last-called child when that is an activation (a
    post-activation block: relu(branch + skip)), else the block's output (branch + skip)."""
    if "output" not in rec:
        raise UserError(f"module {name} was not called in the forward pass; pass other modules=")
    x, out = rec["input"], rec["output"]
    shortcut = [c for c in rec["calls"] if c[0] == skip_name]
    skip = shortcut[-1][3] if shortcut else x
    last = rec["calls"][-1] if rec["calls"] else None
    total = last[2] if last is not None and isinstance(last[1], ACTIVATIONS) else out
    if skip.shape != total.shape:
        raise UserError(
            f"block {name} changes shape {tuple(x.shape)} -> {tuple(total.shape)} and calls no child named "
            f"{skip_name!r}: its skip path is unknown; name it with skip_name= or pass residual blocks as modules="
        )
    return skip, total


@register_probe
def signal_propagation(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor | None = None,
    *,
    loss_fn: LossFn | None = None,
    modules: Iterable[str | nn.Module] | None = None,
    norm_stats: NormStats = "batch",
    skip_name: str = "shortcut",
) -> ProbeResult:
    """Per residual block: channel squared mean and variance of the stream, branch/skip variance ratio (E15).

    For each residual block (`modules=`, else the model's `block_outputs()`), from one forward:
    `sq_mean` and `variance` of the residual stream (the block's output): the squared mean and the
    population variance of each channel over (batch, x, y), averaged over channels (Brock et al.'s
    signal propagation plot); `branch_variance` and `skip_variance`: the same average channel variance of
    the residual branch and of the skip path, where skip = the output of the block's child named
    `skip_name` (default `shortcut`; identity when there is none or it is not called) and branch =
    sum − skip, with sum the block's output or, when the block's last call is an activation module
    (post-activation: relu(branch + skip)), that activation's input; `branch_skip_ratio` =
    branch_variance / skip_variance (NaN for a zero skip). A block whose add is followed by a functional
    (not module) activation is read at its output (its "branch" then includes the activation's effect).
    Forward only."""
    with guard(model), norm_stats_mode(model, norm_stats) as stats:
        mods = block_modules(model, modules)
        if not mods:
            raise UserError(
                "signal_propagation needs the residual blocks: the model has no block_outputs(); pass modules="
            )
        recs: dict[str, dict] = {}
        with torch.no_grad(), ExitStack() as hooks:
            for n, m in mods:
                recs[n] = hooks.enter_context(_record(m))
            model(inputs)
    paper = paper_layer_map(model)
    rows = []
    for n, _ in mods:
        skip, total = residual_parts(n, recs[n], skip_name)
        sq_mean, var = channel_stats(recs[n]["output"])
        branch_var, skip_var = channel_stats(total.double() - skip.double())[1], channel_stats(skip)[1]
        values = {
            "sq_mean": sq_mean,
            "variance": var,
            "branch_variance": branch_var,
            "skip_variance": skip_var,
            "branch_skip_ratio": branch_var / skip_var if skip_var > 0 else float("nan"),
        }
        rows += metric_rows("signal_propagation", n, paper_layer_of(n, paper), values)
    return ProbeResult.from_rows(rows, {}, norm_stats=stats)
