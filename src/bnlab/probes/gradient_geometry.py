"""gradient_geometry (E12, reviewer 3): where the input-independent gradient points.

At fixed θ and from K minibatches (batch statistics):
- the input-independent term ḡ = mean of the K minibatch gradients, each minibatch gradient's cosine with
  it (and with the mean of the other K − 1, free of self-overlap), and ‖ḡ‖²/mean‖g_k‖²;
- for every Conv2d/Linear weight w: radial part ⟨v, w⟩/‖w‖ and tangential part ‖v − (⟨v,w⟩/‖w‖²)w‖ of the
  minibatch gradient, of ḡ and of the optimizer's update; whether the weight is followed by a
  normalization, detected numerically as scale invariance (max_k |⟨g_k, w⟩|/(‖g_k‖‖w‖) < 1e-5: the loss
  gradient of a scale-invariant weight is orthogonal to it; BN's eps breaks the invariance by ~eps/var of
  the weight's output, ~1e-7 in a CIFAR ResNet at init against >= 1e-3 for weights without a norm); and the effective lr = lr/‖w‖² (the lr that
  acts on the direction w/‖w‖ of a scale-invariant weight);
- loss slices L_B(θ + η·u) along u = the filter-normalized −ḡ (and the minibatch's −g), and along a random
  direction orthogonal to u, filter-normalized the same way (Li et al. 2018: each output filter of a
  weight rescaled to that filter's norm in θ; biases and 1-d parameters are not moved).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from bnlab.errors import UserError
from bnlab.probes.capture import (
    WEIGHT_TYPES,
    guard,
    paper_layer_map,
    paper_layer_of,
)
from bnlab.probes.context import ProbeContext
from bnlab.probes.norm_stats import NormStats, norm_stats_mode
from bnlab.probes.registry import register_probe
from bnlab.probes.result import ProbeResult
from bnlab.probes.step_size_scan import eta_grid
from bnlab.probes.update import (
    Params,
    batch_gradient,
    detached_params,
    dot,
    loss_at,
    losses_along,
    update_direction,
)

INVARIANCE_TOL = 1e-5


def _filter_scaled(d: Tensor, w: Tensor) -> Tensor:
    """Each output filter (slice along dim 0) of d rescaled to the norm of the same filter of w."""
    dims = tuple(range(1, d.dim()))
    dn = torch.linalg.vector_norm(d, dim=dims, keepdim=True)
    wn = torch.linalg.vector_norm(w, dim=dims, keepdim=True)
    return torch.where(dn > 0, d * (wn / dn.clamp_min(torch.finfo(d.dtype).tiny)), torch.zeros_like(d))


def filter_normalized_directions(base: Params, direction: Params, seed: int = 0) -> tuple[Params, Params]:
    """(u, r): u = `direction` filter-normalized; r = a Gaussian direction made orthogonal to u filter by
    filter, then filter-normalized — so ⟨r, u⟩ = 0 exactly in every filter and hence overall.

    Parameters with fewer than 2 dims (biases, norm affine parameters) get zero in both. The random draw
    uses a private CPU generator (global RNG untouched; the same draw on every device).
    """
    gen = torch.Generator().manual_seed(seed)
    u: Params = {}
    r: Params = {}
    for n, w in base.items():
        raw = torch.randn(w.shape, generator=gen, dtype=torch.float64).to(device=w.device, dtype=w.dtype)
        if w.dim() < 2:
            u[n] = torch.zeros_like(w)
            r[n] = torch.zeros_like(w)
            continue
        un = _filter_scaled(direction[n], w)
        dims = tuple(range(1, w.dim()))
        uu = (un * un).sum(dim=dims, keepdim=True)
        proj = torch.where(
            uu > 0, (raw * un).sum(dim=dims, keepdim=True) / uu.clamp_min(1e-300), torch.zeros_like(uu)
        )
        u[n] = un
        r[n] = _filter_scaled(raw - proj * un, w)
    return u, r


def _mean(dicts: list[Params]) -> Params:
    return {n: torch.stack([d[n] for d in dicts]).mean(0) for n in dicts[0]}


def _norm(a: Params) -> float:
    return dot(a, a) ** 0.5


@register_probe(kind="data")
def gradient_geometry(
    model: nn.Module,
    batches: Sequence[tuple],
    *,
    ctx: ProbeContext,
    etas: Sequence[float] | None = None,
    seed: int = 0,
    batch_index: int = 0,
    invariance_tol: float = INVARIANCE_TOL,
    norm_stats: NormStats = "batch",
) -> ProbeResult:
    """Input-independent part of the gradient, radial/tangential split per weight, and loss slices (E12e).

    Input-independent gradient, radial/tangential split per weight, and loss slices (module docstring).

    `batches[batch_index]` is the minibatch of the per-weight "gradient" rows and of the loss slices.
    The "update" direction needs ctx.optimizer; the effective lr needs ctx.lr or an optimizer.
    """
    if len(batches) < 2:
        raise UserError(
            f"gradient_geometry needs at least 2 minibatches for the mean gradient, got {len(batches)}"
        )
    grid = eta_grid(etas)
    lr = ctx.step_lr
    rows: list[dict] = []
    arrays: dict[str, np.ndarray] = {"eta": grid}
    paper = paper_layer_map(model)
    with guard(model), norm_stats_mode(model, norm_stats) as stats:
        grads = [batch_gradient(model, x, y, ctx.loss_fn)[0] for x, y in batches]
        k = len(grads)
        mean_g = _mean(grads)
        base = detached_params(model)

        # --- the input-independent term
        total = {n: mean_g[n] * k for n in mean_g}
        cos, cos_loo, sq = [], [], []
        for g in grads:
            others = {n: (total[n] - g[n]) / (k - 1) for n in g}
            cos.append(dot(g, mean_g) / (_norm(g) * _norm(mean_g)))
            cos_loo.append(dot(g, others) / (_norm(g) * _norm(others)))
            sq.append(dot(g, g))
        arrays["cos_with_mean"], arrays["cos_with_others"] = np.array(cos), np.array(cos_loo)
        model_rows = {
            "cos_with_mean": float(np.mean(cos)),
            "cos_with_others": float(np.mean(cos_loo)),
            "cos_with_others_std": float(np.std(cos_loo, ddof=1)),
            "mean_grad_norm": _norm(mean_g),
            "grad_norm": float(np.sqrt(np.mean(sq))),
            "input_independent_fraction": dot(mean_g, mean_g) / float(np.mean(sq)),
        }
        for m, v in model_rows.items():
            rows.append({"probe": "gradient_geometry", "layer": "model", "metric": m, "value": v})

        # --- radial vs tangential, per weight of a Conv2d/Linear
        dirs: dict[str, Params] = {"gradient": grads[batch_index], "mean_gradient": mean_g}
        if ctx.optimizer is not None:
            dirs["update"] = update_direction(ctx.optimizer, model, grads[batch_index])
        for mname, mod in model.named_modules():
            if not isinstance(mod, WEIGHT_TYPES):
                continue
            pname = f"{mname}.weight" if mname else "weight"
            if pname not in base:
                continue
            w = base[pname].double()
            wn = float(w.norm())
            inv = max(
                abs(float((g[pname].double() * w).sum())) / max(float(g[pname].double().norm()) * wn, 1e-300)
                for g in grads
            )
            common = {
                "probe": "gradient_geometry",
                "layer": mname,
                "paper_layer": paper_layer_of(mname, paper),
            }
            per_w = {
                "weight_norm": wn,
                "invariance": inv,
                "scale_invariant": float(inv < invariance_tol),
                "effective_lr": lr / wn**2 if lr is not None and wn > 0 else float("nan"),
            }
            for m, val in per_w.items():
                rows.append({**common, "metric": m, "value": val})
            for dname, d in dirs.items():
                vec = d[pname].double()
                coef = float((vec * w).sum()) / wn**2
                radial = abs(coef) * wn
                tangential = float((vec - coef * w).norm())
                vn = float(vec.norm())
                for m, val in (
                    ("radial", radial),
                    ("tangential", tangential),
                    ("radial_fraction", radial / vn if vn > 0 else float("nan")),
                    ("cos_with_weight", coef * wn / vn if vn > 0 else float("nan")),
                ):
                    rows.append({**common, "metric": m, "value": val, "direction": dname})

        # --- loss slices, filter-normalized
        x, y = batches[batch_index]
        loss0 = loss_at(model, x, y, base, ctx.loss_fn)
        u, r = filter_normalized_directions(base, {n: -t for n, t in mean_g.items()}, seed)
        ug, _ = filter_normalized_directions(base, {n: -t for n, t in grads[batch_index].items()}, seed)
        for dname, d in (("mean_gradient", u), ("gradient", ug), ("random_orthogonal", r)):
            losses = losses_along(model, x, y, base, d, grid, ctx.loss_fn)
            arrays[f"slice_{dname}"] = losses
            for eta, loss in zip(grid, losses):
                common = {
                    "probe": "gradient_geometry",
                    "layer": "model",
                    "direction": dname,
                    "eta": float(eta),
                }
                rows.append({**common, "metric": "slice_loss", "value": float(loss)})
                rows.append({**common, "metric": "slice_ratio", "value": float(loss / loss0)})
    return ProbeResult.from_rows(
        rows,
        arrays,
        norm_stats=stats,
        step=ctx.step,
        lr=lr,
        loss0=loss0,
        seed=seed,
        n_batches=k,
        invariance_tol=invariance_tol,
    )
