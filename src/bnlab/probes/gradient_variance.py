"""gradient_variance (review 1, E9b): intra-layer vs intra-batch variance of Conv2d/Linear weight gradients."""

from __future__ import annotations

from collections.abc import Iterable

from torch import Tensor, nn

from bnlab.probes.capture import LossFn, guard, paper_layer_map
from bnlab.probes.norm_stats import NormStats, norm_stats_mode, resolve_norm_stats
from bnlab.probes.registry import register_probe
from bnlab.probes.result import ProbeResult, metric_rows
from bnlab.probes.weight_grads import batch_weight_grads, per_example_weights, weight_layers


@register_probe
def gradient_variance(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    *,
    loss_fn: LossFn | None = None,
    layers: Iterable[str | int] | None = None,
    per_example: NormStats = "batch",
    norm_stats: NormStats = "batch",
) -> ProbeResult:
    """Per layer: variance of the gradient over its entries and over the examples of the batch (E9b).

    Per Conv2d/Linear layer: `intra_layer` = Var_e ḡ_e (entries e of the minibatch gradient of the mean
    loss) and `intra_batch` = mean_e Var_i g_{i,e} over the per-example gradients ∂ℓ_i/∂K of mode
    `per_example` (recorded in attrs). Population variances."""
    per_example = resolve_norm_stats(per_example, "per_example")  # type: ignore[assignment]
    mods = weight_layers(model, layers)
    with guard(model), norm_stats_mode(model, norm_stats) as stats:
        mean_g = batch_weight_grads(model, inputs, targets, loss_fn, mods)
    per_ex = per_example_weights(model, inputs, targets, per_example, loss_fn, mods)
    paper = paper_layer_map(model)
    rows = []
    for n, _ in mods:
        g = mean_g[n].double()
        pe = per_ex[n].double().reshape(inputs.shape[0], -1)
        values = {
            "intra_layer": float(g.var(correction=0)),
            "intra_batch": float(pe.var(0, correction=0).mean()),
        }
        rows += metric_rows("gradient_variance", n, paper.get(n), values)
    return ProbeResult.from_rows(rows, {}, norm_stats=stats, per_example=per_example)
