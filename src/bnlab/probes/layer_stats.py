"""`layer_stats`: the cheap default probe of every training run (every `train.layer_stats_every` steps).

Per weight of every Conv/Linear/norm layer: gradient norm ‖g‖, weight norm ‖w‖, and the update/weight
ratio ‖Δw‖/‖w‖ of the step the optimizer is about to take (lr × the SGD update direction, momentum and
weight decay included). Reads `.grad` as left by backward (the trainer calls it after backward, before
the step); touches nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from bnlab.errors import UserError
from bnlab.probes.capture import guard, paper_layer_map
from bnlab.probes.context import ProbeContext
from bnlab.probes.norm_stats import norm_stats_label
from bnlab.probes.registry import register_probe
from bnlab.probes.result import ProbeResult
from bnlab.probes.weight_grads import batch_weight_grads

LAYER_TYPES = (nn.Conv1d, nn.Conv2d, nn.Linear, nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


@register_probe(kind="data")
def layer_stats(model: nn.Module, batches: Sequence[tuple] = (), *, ctx: ProbeContext) -> ProbeResult:
    """Per Conv/Linear/norm weight: weight norm, gradient norm and the coming SGD step's update/weight ratio.

    Metrics weight_norm, grad_norm and update_ratio ‖Δw‖/‖w‖ of the coming step. Reads the gradients in `.grad` that the training step's backward left (module docstring); update_ratio
    needs a torch SGD in ctx.optimizer and `.grad`. Called by hand on a model with no `.grad`, it computes the gradient
    of the mean loss over `batches` (each minibatch with its own batch statistics; `.grad` untouched) and
    records grad_source="batches"; with neither, it is a UserError saying so."""
    named = [(n, m) for n, m in model.named_modules() if isinstance(m, LAYER_TYPES)]
    grads = {}
    for n, m in named:
        w = getattr(m, "weight", None)
        if isinstance(w, torch.Tensor) and w.grad is not None:
            grads[f"{n}.weight"] = w.grad.detach()
    source = "grad"
    if not grads:
        if not batches:
            raise UserError(
                "layer_stats reads the gradients that backward leaves in .grad, and no Conv/Linear/norm weight "
                "has one: call loss.backward() first, or pass minibatches: layer_stats(model, x, y)"
            )
        grads = _batch_grads(model, named, batches, ctx.loss_fn)
        source = "batches"
    update: dict[str, torch.Tensor] = {}
    if source == "grad" and ctx.optimizer is not None and isinstance(ctx.optimizer, torch.optim.SGD):
        from bnlab.probes.update import sgd_direction

        full = {
            pn: (p.grad.detach() if p.grad is not None else torch.zeros_like(p))
            for pn, p in model.named_parameters()
        }
        lr = ctx.lr if ctx.lr is not None else ctx.optimizer.param_groups[0]["lr"]
        with torch.no_grad():
            update = {k: lr * v for k, v in sgd_direction(ctx.optimizer, model, full).items() if k in grads}
    paper = paper_layer_map(model)
    norms: list[tuple[str, str, torch.Tensor]] = []
    for n, m in named:
        w = getattr(m, "weight", None)
        key = f"{n}.weight"
        if not isinstance(w, torch.Tensor) or key not in grads:
            continue
        norms.append((n, "weight_norm", w.detach().norm()))
        norms.append((n, "grad_norm", grads[key].norm()))
        if key in update:
            norms.append((n, "update_ratio", update[key].norm() / w.detach().norm().clamp_min(1e-30)))
    # one host transfer for all layers (no per-layer .item())
    values = torch.stack([v.double() for _, _, v in norms]).cpu().tolist() if norms else []
    rows = [
        {"probe": "layer_stats", "layer": n, "paper_layer": paper.get(n), "metric": metric, "value": v}
        for (n, metric, _), v in zip(norms, values)
    ]
    # the gradients in .grad come from the trainer's forward in training mode: batch statistics
    return ProbeResult.from_rows(rows, norm_stats=norm_stats_label(model, "batch"), grad_source=source)


def _batch_grads(
    model: nn.Module, named: list, batches: Sequence[tuple], loss_fn: object
) -> dict[str, Tensor]:
    """∂(mean over minibatches of the mean loss)/∂w for the layers' weights that require a gradient, each
    minibatch in training mode (its own batch statistics), keyed `<module>.weight`; `.grad` untouched."""
    mods = [
        (n, m)
        for n, m in named
        if isinstance(getattr(m, "weight", None), nn.Parameter) and m.weight.requires_grad
    ]
    total: dict[str, Tensor] = {}
    with guard(model):
        model.train()
        for x, y in batches:
            for n, g in batch_weight_grads(model, x, y, loss_fn, mods).items():  # type: ignore[arg-type]
                total[n] = total[n] + g if n in total else g
    return {f"{n}.weight": g / len(batches) for n, g in total.items()}
