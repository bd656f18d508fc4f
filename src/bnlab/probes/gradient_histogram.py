"""gradient_histogram (E3, Fig. 2): histograms and tails of weight-gradient entries per Conv2d/Linear layer."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from torch import Tensor, nn

from bnlab.errors import UserError
from bnlab.probes.capture import LossFn, guard, paper_layer_map
from bnlab.probes.norm_stats import NormStats, norm_stats_label, norm_stats_mode, resolve_norm_stats
from bnlab.probes.registry import register_probe
from bnlab.probes.result import ProbeResult, metric_rows
from bnlab.probes.weight_grads import batch_weight_grads, per_example_weights, weight_layers

# statistics on a flat sample (float64)


def excess_kurtosis(v: np.ndarray) -> float:
    c = v - v.mean()
    m2 = np.mean(c**2)
    return float(np.mean(c**4) / m2**2 - 3.0) if m2 > 0 else float("nan")


def hill_index(v: np.ndarray, top: float = 0.01) -> float:
    """Hill estimator of the tail index α from the top `top` fraction of |v| (k = max(2, ⌊top·n⌋) order
    statistics above the (k+1)-th largest): α̂ = k / Σ_{i≤k} ln(a_(i) / a_(k+1)). Smaller α = heavier tail."""
    a = np.sort(np.abs(v))[::-1]
    k = max(2, int(np.floor(top * a.size)))
    if a.size <= k or a[k] <= 0:
        return float("nan")
    s = np.sum(np.log(a[:k] / a[k]))
    return float(k / s) if s > 0 else float("inf")


def tail_metrics(v: np.ndarray) -> dict[str, float]:
    mean, std = float(v.mean()), float(v.std())
    dev = np.abs(v - mean)
    return {
        "std": std,
        "kurtosis": excess_kurtosis(v),
        "hill_index": hill_index(v),
        "frac_3sigma": float(np.mean(dev > 3 * std)),
        "frac_10sigma": float(np.mean(dev > 10 * std)),
        "max_abs": float(np.abs(v).max()),
        "count": float(v.size),
    }


def histograms(v: np.ndarray, bins: int, log_bins: int) -> dict[str, np.ndarray]:
    """Linear bins symmetric over [-max|v|, max|v|]; log10-magnitude bins over the nonzero |v|."""
    m = float(np.abs(v).max()) or 1.0
    counts, edges = np.histogram(v, bins=bins, range=(-m, m))
    nz = np.abs(v[v != 0])
    if nz.size:
        lo, hi = np.floor(np.log10(nz.min())), np.ceil(np.log10(nz.max()))
        lcounts, ledges = np.histogram(np.log10(nz), bins=log_bins, range=(lo, max(hi, lo + 1)))
    else:
        lcounts, ledges = np.zeros(log_bins, dtype=np.int64), np.linspace(0, 1, log_bins + 1)
    return {
        "hist_counts": counts,
        "hist_edges": edges,
        "log10_counts": lcounts,
        "log10_edges": ledges,
        "log10_zeros": np.array(int(v.size - nz.size)),
    }


@register_probe
def gradient_histogram(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    *,
    loss_fn: LossFn | None = None,
    layers: Iterable[str | int] | None = None,
    per_example: NormStats | None = None,
    minibatch_size: int | None = None,
    bins: int = 101,
    log_bins: int = 60,
    norm_stats: NormStats = "batch",
) -> ProbeResult:
    """Histogram and tail statistics (std, kurtosis, tail index) of weight-gradient entries per Conv2d/Linear (E3).

    Histograms and tail statistics of weight-gradient entries per Conv2d/Linear layer (E3, Fig. 2).

    Sample: the batch gradient (default); with `minibatch_size`, the gradients of consecutive minibatches of
    that size pooled; with `per_example` (batch | frozen | running), the B per-example gradients ∂ℓ_i/∂K
    pooled (B × entries values), in that statistics mode (then `norm_stats` is not used and the result
    records the per-example mode as its norm_stats). Metrics: std, kurtosis (excess), hill_index (tail index α on the top 1%
    of |g|), frac_3sigma, frac_10sigma (share beyond 3/10 std from the mean), max_abs, count. Arrays
    `<layer>/hist_counts|hist_edges` (linear bins), `<layer>/log10_counts|log10_edges|log10_zeros`.
    """
    mods = weight_layers(model, layers)
    if per_example is not None and minibatch_size is not None:
        raise UserError("give either per_example= or minibatch_size=, not both")
    samples: dict[str, list[Tensor]] = {n: [] for n, _ in mods}
    if per_example is not None:
        per_example = resolve_norm_stats(per_example, "per_example")  # type: ignore[assignment]
        stats = norm_stats_label(model, per_example)  # per_example_gradients sets its own mode
        for n, g in per_example_weights(model, inputs, targets, per_example, loss_fn, mods).items():
            samples[n].append(g)
    else:
        step = minibatch_size or inputs.shape[0]
        if step < 1 or step > inputs.shape[0]:
            raise UserError(f"minibatch_size must be in 1..{inputs.shape[0]} (the batch size)")
        with guard(model), norm_stats_mode(model, norm_stats) as stats:
            for s in range(0, inputs.shape[0] - step + 1, step):
                for n, g in batch_weight_grads(
                    model, inputs[s : s + step], targets[s : s + step], loss_fn, mods
                ).items():
                    samples[n].append(g)
    paper = paper_layer_map(model)
    rows, arrays = [], {}
    for n, parts in samples.items():
        v = torch.cat([p.reshape(-1) for p in parts]).detach().double().cpu().numpy()
        rows += metric_rows("gradient_histogram", n, paper.get(n), tail_metrics(v))
        for key, arr in histograms(v, bins, log_bins).items():
            arrays[f"{n}/{key}"] = arr
    return ProbeResult.from_rows(
        rows, arrays, norm_stats=stats, per_example=per_example, minibatch_size=minibatch_size
    )
