"""jacobian_spectrum (E10 on a real network): singular values of the per-example Jacobian between two layers.

J_i = d h_to[i] / d h_from[i]; the computation (dense basis sweep or Golub-Kahan-Lanczos) is
`bnlab.probes.jacobians.jacobian_spectrum` (also `bnlab.rmt.jacobian_spectrum`), which this probe wraps as a (model, batch) measurement; statistics
modes come from `bnlab.probes.norm_stats` (batch renorm, frozen and ghost batch norm included).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from torch import Tensor, nn

from bnlab.probes.capture import LossFn, paper_layer_map, paper_layer_of
from bnlab.probes.jacobians import jacobian_spectrum as spectrum
from bnlab.probes.norm_stats import NormStats
from bnlab.probes.registry import register_probe
from bnlab.probes.result import ProbeResult


@register_probe
def jacobian_spectrum(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor | None = None,
    *,
    loss_fn: LossFn | None = None,
    from_layer: str | None = None,
    to_layer: str | None = None,
    k: int = 1,
    norm_stats: NormStats = "batch",
    examples: Sequence[int] | None = None,
    method: Literal["auto", "dense", "lanczos"] = "auto",
    krylov_dim: int | None = None,
    seed: int = 0,
) -> ProbeResult:
    """Top/bottom singular values of each example's Jacobian between two layers (or input and output) (E10).

    Top-k and bottom-k singular values of d h_to[i] / d h_from[i] for each example i of the batch.

    from_layer / to_layer: module names (None or "": the model input / the model output). norm_stats:
    batch (the Jacobian includes the path through the batch statistics; each example costs its own run),
    frozen or running. examples: batch indices (default all). method: dense (both sides <= 512 units),
    lanczos (Krylov dimension `krylov_dim`, default min(d, 200); exact once it reaches min(d_in, d_out)),
    or auto. targets and loss_fn are not used. Rows per example: sigma_top / sigma_bottom (key column
    `rank`, 0 = largest / smallest) and log_condition = ln(sigma_max / sigma_min), layer = to_layer (or
    "output"); arrays `top`, `bottom` (examples × k), `examples`; attrs: from_layer, to_layer, method,
    d_in, d_out, krylov_dim, exact.
    """
    res = spectrum(
        model,
        inputs,
        from_layer,
        to_layer,
        k=k,
        mode=norm_stats,
        examples=examples,
        method=method,
        krylov_dim=krylov_dim,
        seed=seed,
    )
    layer = to_layer or "output"
    rows = res.rows(probe="jacobian_spectrum", layer=layer)
    pl = paper_layer_of(layer, paper_layer_map(model))
    for r in rows:
        r["paper_layer"] = pl
    return ProbeResult.from_rows(
        rows,
        {"top": res.top, "bottom": res.bottom, "examples": res.examples},
        norm_stats=res.norm_stats,
        from_layer=from_layer or "input",
        to_layer=layer,
        method=res.method,
        d_in=res.d_in,
        d_out=res.d_out,
        krylov_dim=res.krylov_dim,
        exact=res.exact,
    )
