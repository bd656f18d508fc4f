"""Weight gradients of layers, keyed by module name: the minibatch gradient (gradient_histogram,
gradient_variance, weight_grad_norms, and layer_stats' gradient from minibatches) and per-example gradients
of Conv2d/Linear weights."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

from bnlab.probes.capture import LossFn, loss_value, select_layers
from bnlab.probes.per_example import per_example_gradients


def batch_weight_grads(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    loss_fn: LossFn | None,
    mods: list[tuple[str, nn.Module]],
) -> dict[str, Tensor]:
    """∂L/∂weight of each module for the mean loss of this batch (model already in its statistics mode)."""
    return weight_grads(loss_value(model(inputs), targets, loss_fn), mods)


def weight_grads(loss: Tensor, mods: list[tuple[str, nn.Module]]) -> dict[str, Tensor]:
    """∂loss/∂weight of each module, keyed by module name (zeros where the loss does not depend on it)."""
    grads = torch.autograd.grad(loss, [m.weight for _, m in mods], allow_unused=True)
    return {n: (g if g is not None else torch.zeros_like(m.weight)) for (n, m), g in zip(mods, grads)}


def weight_layers(model: nn.Module, layers: Iterable[str | int] | None) -> list[tuple[str, nn.Module]]:
    return select_layers(model, layers, (nn.Conv2d, nn.Linear))


def per_example_weights(
    model: nn.Module, inputs: Tensor, targets: Tensor, mode: str, loss_fn: LossFn | None, mods: list
) -> dict[str, Tensor]:
    names = {id(m.weight): n for n, m in mods}
    pname = {id(p): n for n, p in model.named_parameters()}
    got = per_example_gradients(model, inputs, targets, mode, loss_fn, params=[m.weight for _, m in mods])
    return {names[id(m.weight)]: got[pname[id(m.weight)]] for _, m in mods}
