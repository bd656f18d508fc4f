"""sgd_noise (E2, Eq. 2): how noisy the SGD step is, measured three ways, with standard errors.

With K minibatches B_1..B_K of one size b at fixed θ (batch statistics, as in training):
- measured: the full gradient is g = E[g_B], estimated by the mean of the K minibatch gradients (not a
  big-batch gradient, whose BN statistics differ); grad_var = E‖g_B − g‖² = Σ_k ‖g_k − ḡ‖²/(K − 1)
  (unbiased), noise = α²·grad_var with α the lr.
- per-example bound (Eq. 2): C = E_i‖∇ℓ_i − ∇ℓ‖² from per-example gradients over the K·b examples
  (unbiased, 1/(n − 1)), bound = α²C/b, and the exact without-replacement value α²C(N − b)/(b(N − 1))
  for a training set of N examples. Examples are independent only without BN or with frozen/running
  statistics: the bound is labelled "no-BN, or frozen/running statistics only". When the noise's statistics
  (`norm_stats`) and the bound's (`per_example`) differ on a normalized net, the result says so (attrs
  noise_norm_stats, bound_norm_stats, conventions) and adds noise_same_stats / noise_over_bound_same_stats,
  the noise measured again with the bound's statistics (K more minibatch gradients).
- micro-batch estimator (McCandlish et al. 2018, appendix A): from ‖G‖² at two batch sizes b_s < b,
  |G|² ≈ (b‖G_b‖² − b_s‖G_s‖²)/(b − b_s), tr Σ ≈ (‖G_s‖² − ‖G_b‖²)/(1/b_s − 1/b), and the noise scale
  B_simple = tr Σ/|G|². Needs no per-example gradients; micro-batches use their own batch statistics.
Memory: the K flat minibatch gradients are held at once (K × parameters).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from bnlab.errors import UserError
from bnlab.probes.capture import guard
from bnlab.probes.context import ProbeContext
from bnlab.probes.norm_stats import NormStats, norm_stats_label, norm_stats_mode, resolve_norm_stats
from bnlab.probes.per_example import per_example_gradients
from bnlab.probes.registry import register_probe
from bnlab.probes.result import ProbeResult
from bnlab.probes.update import batch_gradient, flat

BOUND_LABEL = "no-BN, or frozen/running statistics only"
STORE_LIMIT = 2**26  # per-example gradient entries kept between the two passes (256 MiB in float32)


def _flat_grad(model: nn.Module, x: Tensor, y: Tensor, loss_fn: object) -> Tensor:
    grads, _ = batch_gradient(model, x, y, loss_fn)  # type: ignore[arg-type]
    return flat(grads).double()


def _jackknife(num: np.ndarray, den: np.ndarray) -> float:
    """Standard error of mean(num)/mean(den) by leave-one-out over the K batches."""
    k = len(num)
    if k < 2:
        return float("nan")
    loo = (num.sum() - num) / (den.sum() - den)
    return float(np.sqrt((k - 1) / k * np.sum((loo - loo.mean()) ** 2)))


def per_example_spread(
    model: nn.Module, batches: Sequence[tuple], mode: str, loss_fn: object = None
) -> tuple[float, float, int]:
    """(C, standard error of C, n): C = Σ_i ‖∇ℓ_i − ∇ℓ‖²/(n − 1) over all examples of the batches.

    Two passes: the mean first, then the spread (per-example gradients are kept between the passes
    when they fit in STORE_LIMIT entries, else recomputed).
    """

    def per_batch(x: Tensor, y: Tensor) -> Tensor:
        g = per_example_gradients(model, x, y, mode, loss_fn)  # type: ignore[arg-type]
        return torch.cat([t.reshape(t.shape[0], -1) for t in g.values()], dim=1).double()

    n = sum(int(x.shape[0]) for x, _ in batches)
    n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    keep = n * n_params <= STORE_LIMIT
    stored: list[Tensor] = []
    total: Tensor | None = None
    for x, y in batches:
        g = per_batch(x, y)
        total = g.sum(0) if total is None else total + g.sum(0)
        if keep:
            stored.append(g)
    assert total is not None
    mean = total / n
    spreads = []
    for i, (x, y) in enumerate(batches):
        g = stored[i] if keep else per_batch(x, y)
        spreads.append(((g - mean) ** 2).sum(1))
    c_i = torch.cat(spreads).cpu().numpy()
    c = float(c_i.sum() / (n - 1))
    se = float(c_i.std(ddof=1) / math.sqrt(n) * n / (n - 1))
    return c, se, n


@register_probe(kind="data")
def sgd_noise(
    model: nn.Module,
    batches: Sequence[tuple],
    *,
    ctx: ProbeContext,
    alpha: float | None = None,
    per_example: NormStats | None = "frozen",
    dataset_size: int | None = None,
    micro_batch: int | None = None,
    norm_stats: NormStats = "batch",
) -> ProbeResult:
    """SGD noise E|alpha(g_B - g)|^2 from K >= 2 minibatches, with the per-example bound alpha^2 C/|B| (E2).

    SGD noise at θ from K >= 2 minibatches of one size b (module docstring).

    alpha: the lr (default ctx.lr, else 1). per_example: batch | frozen | running, or None to skip C.
    dataset_size: N for the without-replacement factor (default ctx.extra["dataset_size"]; without one the
    bound_wor row is left out).
    micro_batch: b_s of the micro-batch estimator (default max(2, b // 4)).
    """
    k = len(batches)
    if k < 2:
        raise UserError(f"sgd_noise needs at least 2 minibatches to estimate a variance, got {k}")
    sizes = {int(x.shape[0]) for x, _ in batches}
    if len(sizes) != 1:
        raise UserError(f"sgd_noise needs minibatches of one size, got sizes {sorted(sizes)}")
    b = sizes.pop()
    bs = micro_batch if micro_batch is not None else max(2, b // 4)
    if not 1 <= bs < b:
        raise UserError(f"micro_batch must be between 1 and the batch size - 1 ({b - 1}), got {bs}")
    if per_example is not None:
        per_example = resolve_norm_stats(per_example, "per_example")  # type: ignore[assignment]
    if dataset_size is None and ctx.extra.get("dataset_size") is not None:
        dataset_size = int(ctx.extra["dataset_size"])
    if dataset_size is not None and dataset_size < b:
        raise UserError(f"dataset_size ({dataset_size}) must be at least the batch size ({b})")
    a = float(alpha if alpha is not None else (ctx.lr if ctx.lr is not None else 1.0))

    with guard(model), norm_stats_mode(model, norm_stats) as stats:
        big, small_sq = [], []
        for x, y in batches:
            big.append(_flat_grad(model, x, y, ctx.loss_fn))
            chunks = [(x[i : i + bs], y[i : i + bs]) for i in range(0, b - bs + 1, bs)]
            small_sq.append(
                np.mean([float(_flat_grad(model, cx, cy, ctx.loss_fn).square().sum()) for cx, cy in chunks])
            )
    gk = torch.stack(big)
    gbar = gk.mean(0)
    d = ((gk - gbar) ** 2).sum(1).cpu().numpy()  # ‖g_k − ḡ‖²
    grad_var = float(d.sum() / (k - 1))
    grad_var_se = float(d.std(ddof=1) / math.sqrt(k) * k / (k - 1))
    full_sq = float(gbar.square().sum()) - grad_var / k  # unbiased ‖E g_B‖²

    big_sq = gk.square().sum(1).cpu().numpy()
    small = np.asarray(small_sq)
    g2_k = (b * big_sq - bs * small) / (b - bs)
    s_k = (small - big_sq) / (1 / bs - 1 / b)
    g2, s = float(g2_k.mean()), float(s_k.mean())

    def se(v: np.ndarray) -> float:
        return float(v.std(ddof=1) / math.sqrt(len(v)))

    values: list[tuple[str, float, float]] = [
        ("alpha", a, float("nan")),
        ("batch_size", float(b), float("nan")),
        ("alpha_sq_over_b", a * a / b, float("nan")),
        ("grad_var", grad_var, grad_var_se),
        ("noise", a * a * grad_var, a * a * grad_var_se),
        ("full_grad_sq", full_sq, float("nan")),
        ("trace_sigma_micro", s, se(s_k)),
        ("grad_sq_micro", g2, se(g2_k)),
        ("B_simple", s / g2 if g2 != 0 else float("nan"), _jackknife(s_k, g2_k)),
        ("noise_pred_micro", a * a * s / b, a * a * se(s_k) / b),
    ]
    attrs: dict[str, object] = {"micro_batch": bs, "n_batches": k, "alpha": a, "batch_size": b}
    if per_example is not None:
        c, c_se, n = per_example_spread(model, batches, per_example, ctx.loss_fn)
        bound, bound_se = a * a * c / b, a * a * c_se / b
        values += [("C", c, c_se), ("bound", bound, bound_se)]
        if dataset_size is not None:
            f = (dataset_size - b) / (b * (dataset_size - 1))
            values.append(("bound_wor", a * a * c * f, a * a * c_se * f))
        values.append(("noise_over_bound", a * a * grad_var / bound if bound else float("nan"), float("nan")))
        attrs.update(per_example_mode=per_example, bound_label=BOUND_LABEL, n_examples=n)
        attrs.update(noise_norm_stats=stats, bound_norm_stats=norm_stats_label(model, per_example))
        if attrs["noise_norm_stats"] != attrs["bound_norm_stats"]:
            # noise and bound would be in different statistics conventions: measure the noise again in the
            # bound's (the minibatch gradients with per_example's statistics) so the ratio compares like with like
            with guard(model), norm_stats_mode(model, per_example):
                same = torch.stack([_flat_grad(model, x, y, ctx.loss_fn) for x, y in batches])
            d_same = ((same - same.mean(0)) ** 2).sum(1).cpu().numpy()
            var_same = float(d_same.sum() / (k - 1))
            var_same_se = float(d_same.std(ddof=1) / math.sqrt(k) * k / (k - 1))
            values += [
                ("noise_same_stats", a * a * var_same, a * a * var_same_se),
                (
                    "noise_over_bound_same_stats",
                    a * a * var_same / bound if bound else float("nan"),
                    float("nan"),
                ),
            ]
            attrs["conventions"] = (
                f"noise and noise_over_bound: minibatch gradients with {stats} statistics; bound: per-example "
                f"gradients with {per_example} statistics; noise_same_stats and noise_over_bound_same_stats use "
                f"{per_example} statistics for both"
            )
        else:
            attrs["conventions"] = f"noise and bound both with {stats} statistics"
    rows = [{"probe": "sgd_noise", "layer": "model", "metric": m, "value": v, "se": e} for m, v, e in values]
    return ProbeResult.from_rows(
        rows,
        {"grad_dev_sq": d, "small_grad_sq": small, "big_grad_sq": big_sq},
        norm_stats=stats,
        step=ctx.step,
        dataset_size=dataset_size,
        **attrs,
    )
