"""weight_grad_norms (E17, Yang et al. 2019): the norm of the minibatch loss's gradient ∂L/∂W per Conv/Linear
weight, and its natural log, per layer from the input — the quantity whose growth per layer the mean-field
theory of batch normalization predicts (gradient explosion without skips).

The gradient is that of the mean loss of this minibatch, with the norm layers in the chosen statistics mode:
`batch` (this minibatch's statistics, gradients flow through them, as in training), `frozen` (the same
statistics held constant), `running` (eval mode). Metrics per layer: grad_norm ‖∂L/∂W‖_F, log_grad_norm
(ln of it; -inf for a zero gradient), weight_norm ‖W‖_F, and the layer's `depth_index` (1.. in module order).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from torch import Tensor, nn

from bnlab.errors import UserError
from bnlab.probes.capture import LossFn, guard, paper_layer_map
from bnlab.probes.norm_stats import NormStats, norm_stats_mode
from bnlab.probes.registry import register_probe
from bnlab.probes.result import ProbeResult, metric_rows
from bnlab.probes.weight_grads import batch_weight_grads, weight_layers


@register_probe
def weight_grad_norms(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    *,
    loss_fn: LossFn | None = None,
    layers: Iterable[str | int] | None = None,
    norm_stats: NormStats = "batch",
) -> ProbeResult:
    """Per Conv/Linear weight: ‖∂L/∂W‖ and its log with BN statistics batch|frozen|running (E17 gradient explosion).

    ‖∂L/∂W‖_F (and ln of it, and ‖W‖_F) of each Conv/Linear weight for this minibatch's mean loss.

    `depth_index` numbers the measured layers 1, 2, ... in module (= forward, for sequential nets) order;
    `paper_layer` is the model's own numbering where it has one. Parameters, `.grad`, buffers and training
    flags are left as they were (the gradient is taken with autograd.grad, not backward)."""
    mods = weight_layers(model, layers)
    if not mods:
        raise UserError("weight_grad_norms found no Conv/Linear layer to measure")
    with guard(model), norm_stats_mode(model, norm_stats) as stats:
        grads = batch_weight_grads(model, inputs, targets, loss_fn, mods)
    paper = paper_layer_map(model)
    rows = []
    for i, (n, m) in enumerate(mods, start=1):
        g = float(grads[n].detach().double().norm())
        values = {
            "grad_norm": g,
            "log_grad_norm": math.log(g) if g > 0 else -math.inf,
            "weight_norm": float(m.weight.detach().double().norm()),
            "depth_index": float(i),
        }
        rows += metric_rows("weight_grad_norms", n, paper.get(n), values)
    return ProbeResult.from_rows(rows, norm_stats=stats, batch_size=int(inputs.shape[0]))
