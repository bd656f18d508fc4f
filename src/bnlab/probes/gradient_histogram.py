"""Gradient probes at initialization: histograms and tails (E3), spectra (E9), intra-layer vs intra-batch
variance (review 1). Layers are the Conv2d/Linear modules (found by type); the statistic is about their
weight gradient."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from torch import Tensor, nn

from bnlab.errors import UserError
from bnlab.probes.capture import (
    LossFn,
    NormStats,
    forward_captured,
    guard,
    loss_value,
    paper_layer_map,
    select_layers,
    set_norm_stats,
)
from bnlab.probes.per_example import Mode, per_example_gradients
from bnlab.probes.registry import register_probe
from bnlab.probes.result import ProbeResult

# ---------------------------------------------------------------- statistics on a flat sample (float64)


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


# ---------------------------------------------------------------- shared gradient passes


def batch_weight_grads(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    loss_fn: LossFn | None,
    mods: list[tuple[str, nn.Module]],
) -> dict[str, Tensor]:
    """∂L/∂weight of each module for the mean loss of this batch (model already in its statistics mode)."""
    loss = loss_value(model(inputs), targets, loss_fn)
    grads = torch.autograd.grad(loss, [m.weight for _, m in mods], allow_unused=True)
    return {n: (g if g is not None else torch.zeros_like(m.weight)) for (n, m), g in zip(mods, grads)}


def _weight_layers(model: nn.Module, layers: Iterable[str | int] | None) -> list[tuple[str, nn.Module]]:
    return select_layers(model, layers, (nn.Conv2d, nn.Linear))


def _per_example_weights(
    model: nn.Module, inputs: Tensor, targets: Tensor, mode: Mode, loss_fn: LossFn | None, mods: list
) -> dict[str, Tensor]:
    names = {id(m.weight): n for n, m in mods}
    pname = {id(p): n for n, p in model.named_parameters()}
    got = per_example_gradients(model, inputs, targets, mode, loss_fn, params=[m.weight for _, m in mods])
    return {names[id(m.weight)]: got[pname[id(m.weight)]] for _, m in mods}


# ---------------------------------------------------------------- probes


@register_probe("gradient_histogram")
def gradient_histogram(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    *,
    loss_fn: LossFn | None = None,
    layers: Iterable[str | int] | None = None,
    per_example: Mode | None = None,
    minibatch_size: int | None = None,
    bins: int = 101,
    log_bins: int = 60,
    norm_stats: NormStats = "batch",
) -> ProbeResult:
    """Histograms and tail statistics of weight-gradient entries per Conv2d/Linear layer (E3, Fig. 2).

    Sample: the batch gradient (default); with `minibatch_size`, the gradients of consecutive minibatches of
    that size pooled; with `per_example` (coupled | frozen | eval), the B per-example gradients ∂ℓ_i/∂K
    pooled (B × entries values). Metrics: std, kurtosis (excess), hill_index (tail index α on the top 1%
    of |g|), frac_3sigma, frac_10sigma (share beyond 3/10 std from the mean), max_abs, count. Arrays
    `<layer>/hist_counts|hist_edges` (linear bins), `<layer>/log10_counts|log10_edges|log10_zeros`.
    """
    mods = _weight_layers(model, layers)
    if per_example is not None and minibatch_size is not None:
        raise UserError("give either per_example= or minibatch_size=, not both")
    samples: dict[str, list[Tensor]] = {n: [] for n, _ in mods}
    with guard(model):
        norm_mode = set_norm_stats(model, norm_stats)
        if per_example is not None:
            for n, g in _per_example_weights(model, inputs, targets, per_example, loss_fn, mods).items():
                samples[n].append(g)
        else:
            step = minibatch_size or inputs.shape[0]
            if step < 1 or step > inputs.shape[0]:
                raise UserError(f"minibatch_size must be in 1..{inputs.shape[0]} (the batch size)")
            for s in range(0, inputs.shape[0] - step + 1, step):
                for n, g in batch_weight_grads(
                    model, inputs[s : s + step], targets[s : s + step], loss_fn, mods
                ).items():
                    samples[n].append(g)
    paper = paper_layer_map(model)
    rows, arrays = [], {}
    for n, parts in samples.items():
        v = torch.cat([p.reshape(-1) for p in parts]).detach().double().cpu().numpy()
        for metric, value in tail_metrics(v).items():
            rows.append(
                {
                    "probe": "gradient_histogram",
                    "layer": n,
                    "paper_layer": paper.get(n),
                    "metric": metric,
                    "value": value,
                }
            )
        for key, arr in histograms(v, bins, log_bins).items():
            arrays[f"{n}/{key}"] = arr
    return ProbeResult.from_rows(
        rows, arrays, norm_mode=norm_mode, per_example=per_example, minibatch_size=minibatch_size
    )


@register_probe("gradient_variance")
def gradient_variance(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    *,
    loss_fn: LossFn | None = None,
    layers: Iterable[str | int] | None = None,
    per_example: Mode = "coupled",
    norm_stats: NormStats = "batch",
) -> ProbeResult:
    """Per Conv2d/Linear layer: `intra_layer` = Var_e ḡ_e (entries e of the minibatch gradient of the mean
    loss) and `intra_batch` = mean_e Var_i g_{i,e} over the per-example gradients ∂ℓ_i/∂K of mode
    `per_example` (recorded in attrs). Population variances."""
    mods = _weight_layers(model, layers)
    with guard(model):
        norm_mode = set_norm_stats(model, norm_stats)
        mean_g = batch_weight_grads(model, inputs, targets, loss_fn, mods)
    per_ex = _per_example_weights(model, inputs, targets, per_example, loss_fn, mods)
    paper = paper_layer_map(model)
    rows = []
    for n, _ in mods:
        g = mean_g[n].double()
        pe = per_ex[n].double().reshape(inputs.shape[0], -1)
        values = {
            "intra_layer": float(g.var(correction=0)),
            "intra_batch": float(pe.var(0, correction=0).mean()),
        }
        for metric, value in values.items():
            rows.append(
                {
                    "probe": "gradient_variance",
                    "layer": n,
                    "paper_layer": paper.get(n),
                    "metric": metric,
                    "value": value,
                }
            )
    return ProbeResult.from_rows(rows, {}, norm_mode=norm_mode, per_example=per_example)


def spectrum_metrics(s: np.ndarray) -> dict[str, float]:
    """top1_share σ₁²/Σσ², stable_rank ‖A‖_F²/‖A‖₂², effective_rank exp(H(σ/Σσ)) (Roy & Vetterli 2007)."""
    s2 = s**2
    if s2.sum() <= 0:
        return {"top1_share": float("nan"), "stable_rank": float("nan"), "effective_rank": float("nan")}
    p = s / s.sum()
    p = p[p > 0]
    return {
        "top1_share": float(s2[0] / s2.sum()),
        "stable_rank": float(s2.sum() / s2[0]),
        "effective_rank": float(np.exp(-np.sum(p * np.log(p)))),
    }


@register_probe("gradient_spectrum")
def gradient_spectrum(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    *,
    loss_fn: LossFn | None = None,
    layers: Iterable[str | int] | None = None,
    activation: str = "input",
    norm_stats: NormStats = "batch",
) -> ProbeResult:
    """Singular values of each Conv2d's weight gradient reshaped C_out × (C_in/groups·k·k) (`matrix` =
    gradient) and of its channel-centered activation matrix C × (B·H·W) (`matrix` = activation; the conv's
    input by default — the activations the kernel multiplies — or `activation="output"`). Metrics per matrix:
    top1_share, stable_rank, effective_rank. Arrays `<layer>/gradient_sv`, `<layer>/activation_sv`."""
    if activation not in ("input", "output"):
        raise UserError(f"activation must be 'input' or 'output', not {activation!r}")
    mods = select_layers(model, layers, (nn.Conv2d,))
    with guard(model):
        norm_mode = set_norm_stats(model, norm_stats)
        cap, out = forward_captured(model, inputs, mods)
        loss = loss_value(out, targets, loss_fn)
        grads = torch.autograd.grad(loss, [m.weight for _, m in mods], allow_unused=True)
    paper = paper_layer_map(model)
    rows, arrays = [], {}
    for (n, m), g in zip(mods, grads):
        gm = (g if g is not None else torch.zeros_like(m.weight)).detach().reshape(m.out_channels, -1)
        act = (cap.inputs[n] if activation == "input" else cap.outputs[n].detach()).transpose(0, 1)
        a = act.reshape(act.shape[0], -1)
        a = a - a.mean(1, keepdim=True)
        for kind, mat in (("gradient", gm), ("activation", a)):
            s = torch.linalg.svdvals(mat.double()).cpu().numpy()
            arrays[f"{n}/{kind}_sv"] = s
            for metric, value in spectrum_metrics(s).items():
                rows.append(
                    {
                        "probe": "gradient_spectrum",
                        "layer": n,
                        "paper_layer": paper.get(n),
                        "matrix": kind,
                        "metric": metric,
                        "value": value,
                    }
                )
    return ProbeResult.from_rows(rows, arrays, norm_mode=norm_mode, activation=activation)
