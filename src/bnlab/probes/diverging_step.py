"""diverging_step (E5, Fig. 4): channel moments along the update that made a run diverge.

Given the model at θ_{t-1} and the optimizer with its state at that point, Δθ is the update the optimizer
applies on minibatch t-1 (a step on copies; the model and optimizer are not touched). For s on a grid in
[0, 1], every channel's mean and variance over (batch, x, y) at the chosen layers are evaluated on
minibatch t at θ_{t-1} + s·Δθ in training mode (batch statistics), with the loss at each s; at s = 1 the
loss is the one that fired the divergence criterion. Moments are accumulated in float64 (layer 80 of an
unnormalized ResNet-110 reaches variances ~1e16).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call

from bnlab.errors import UserError
from bnlab.probes.capture import (
    WEIGHT_TYPES,
    LossFn,
    guard,
    loss_value,
    paper_layer_map,
    paper_layer_of,
)
from bnlab.probes.norm_stats import norm_stats_mode, unwrap_model
from bnlab.probes.result import ProbeResult
from bnlab.probes.update import batch_gradient, detached_params, displaced, optimizer_step_on_copy

PAPER_LAYERS = (8, 44, 80)  # the layers of Fig. 4
PAPER_DEPTH = 110


def activation_layer(model: nn.Module, layer: str | int) -> tuple[str, int | None]:
    """(module name, paper layer) whose output is "the activation at `layer`".

    A string is a module name. A paper layer number L uses, in order: the model's
    `block_for_paper_layer(L)` (bnlab ResNets: the residual block holding L, mapped by relative depth);
    the model's `paper_layers()` map (the weighted layer numbered L, else the nearest number); otherwise
    the Conv2d/Linear layers in registration order, taken at the same relative depth as L in ResNet-110.
    """
    modules = dict(model.named_modules())
    paper = paper_layer_map(model)
    if isinstance(layer, str):
        if layer not in modules:
            raise UserError(f"{layer!r} is not a module name of this model; see model.named_modules()")
        return layer, paper_layer_of(layer, paper)
    if not 1 <= int(layer) <= PAPER_DEPTH:
        raise UserError(f"paper layers are numbered 1..{PAPER_DEPTH}, got {layer}")
    fn = getattr(model, "block_for_paper_layer", None)
    if callable(fn):
        name = fn(int(layer))
        if isinstance(name, nn.Module):
            name = next(n for n, m in modules.items() if m is name)
        return str(name), int(layer)
    if paper:
        name = min(paper, key=lambda n: (abs(paper[n] - int(layer)), paper[n]))
        return name, paper[name]
    weighted = [n for n, m in modules.items() if isinstance(m, WEIGHT_TYPES)]
    if not weighted:
        raise UserError("the model has no Conv2d/Linear layers to map paper layers onto; pass module names")
    i = int(np.floor((int(layer) - 1) / (PAPER_DEPTH - 1) * (len(weighted) - 1) + 0.5))
    return weighted[i], int(layer)


def _moments(out: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and (biased) variance over every dim but dim 1, in float64."""
    o = out.detach().double()
    dims = [d for d in range(o.dim()) if d != 1]
    return o.mean(dims).cpu().numpy(), o.var(dims, correction=0).cpu().numpy()


def diverging_step(
    model: nn.Module,
    batch_prev: tuple[Tensor, Tensor],
    batch_fired: tuple[Tensor, Tensor],
    optimizer: torch.optim.Optimizer,
    *,
    layers: Sequence[str | int] | None = None,
    grid: int = 21,
    loss_fn: LossFn | None = None,
    precision: str = "float64",
) -> ProbeResult:
    """Fig. 4's heatmaps: arrays `mean/<layer>` and `var/<layer>` of shape [grid, channels], `s`, `loss`.

    model, optimizer: at θ_{t-1} with the optimizer state of that point (and the lr of step t-1 in its
    groups). layers: module names or paper layer numbers (default 8, 44, 80). Table rows per (layer, s):
    max_abs_mean, median_abs_mean, max_var, median_var; per s: loss; plus the update norm.
    precision: "float64" (default) evaluates θ + sΔθ on a float64 copy of the model, so activations that
    overflow float32 (a deep unnormalized net along a violent update) are measured instead of becoming inf;
    "float32" uses the model's own precision.
    """
    model = unwrap_model(model)
    if precision not in ("float32", "float64"):
        raise UserError(f"diverging_step precision must be float32 or float64, not {precision!r}")
    if grid < 2:
        raise UserError(f"diverging_step needs a grid of at least 2 points in [0, 1], got {grid}")
    chosen = [activation_layer(model, ly) for ly in (PAPER_LAYERS if layers is None else layers)]
    modules = dict(model.named_modules())
    s_grid = np.linspace(0.0, 1.0, grid)
    x_prev, y_prev = batch_prev
    x, y = batch_fired
    with guard(model), norm_stats_mode(model, "batch") as stats:
        grads, _ = batch_gradient(model, x_prev, y_prev, loss_fn)
        delta = optimizer_step_on_copy(optimizer, model, grads)
        base = detached_params(model)
        base_dtype = x.dtype
        work = model  # the module the scan runs on
        if precision == "float64":
            import copy

            base_dtype = torch.float64
            work = copy.deepcopy(model).double()  # buffers too; the caller's model is not touched
            base = {k: v.double() if v.is_floating_point() else v for k, v in base.items()}
            delta = {k: v.double() if v.is_floating_point() else v for k, v in delta.items()}
            modules = dict(work.named_modules())
        seen: dict[str, Tensor] = {}

        def hook(name: str) -> Callable:
            def store(mod: nn.Module, args: tuple, out: Tensor) -> None:
                if not isinstance(out, Tensor):
                    raise UserError(
                        f"module {name} returns {type(out).__name__}, not a tensor; pick another layer"
                    )
                seen[name] = out

            return store

        handles = [modules[n].register_forward_hook(hook(n)) for n, _ in chosen]
        means: dict[str, list[np.ndarray]] = {n: [] for n, _ in chosen}
        variances: dict[str, list[np.ndarray]] = {n: [] for n, _ in chosen}
        losses = []
        try:
            with torch.no_grad():
                for s in s_grid:
                    seen.clear()
                    out = functional_call(work, displaced(base, delta, float(s)), (x.to(base_dtype),))
                    losses.append(float(loss_value(out, y, loss_fn)))
                    for n, _ in chosen:
                        m, v = _moments(seen[n])
                        means[n].append(m)
                        variances[n].append(v)
        finally:
            for h in handles:
                h.remove()
    update_norm = float(sum(float(d.double().square().sum()) for d in delta.values())) ** 0.5
    arrays: dict[str, np.ndarray] = {"s": s_grid, "loss": np.array(losses)}
    rows: list[dict] = [
        {"probe": "diverging_step", "layer": "model", "metric": "update_norm", "value": update_norm}
    ]
    for s, loss in zip(s_grid, losses):
        rows.append(
            {"probe": "diverging_step", "layer": "model", "metric": "loss", "value": loss, "s": float(s)}
        )
    for n, pl in chosen:
        mean, var = np.stack(means[n]), np.stack(variances[n])
        arrays[f"mean/{n}"], arrays[f"var/{n}"] = mean, var
        for i, s in enumerate(s_grid):
            common = {"probe": "diverging_step", "layer": n, "paper_layer": pl, "s": float(s)}
            for metric, val in (
                ("max_abs_mean", np.abs(mean[i]).max()),
                ("median_abs_mean", np.median(np.abs(mean[i]))),
                ("max_var", var[i].max()),
                ("median_var", np.median(var[i])),
            ):
                rows.append({**common, "metric": metric, "value": float(val)})
    return ProbeResult.from_rows(
        rows,
        arrays,
        norm_stats=stats,
        layers=[n for n, _ in chosen],
        paper_layers=[pl for _, pl in chosen],
        grid=grid,
    )
