"""E10's measurements as tables: each function returns a ProbeResult (long table + arrays).

Shared by the sweep task (`bnlab.tasks.rmt_task.run_task`) and the CLI (`bnlab rmt ...`), and read by
`bnlab.figures.rmt`. Table columns: probe, layer, paper_layer (<NA>), metric, value + key columns.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Sequence

import numpy as np

from bnlab.errors import UserError
from bnlab.probes.result import ProbeResult
from bnlab.rmt import products, theory


def spectra(
    n: int = 1000,
    ms: Sequence[int] = (1, 3, 5),
    draws: int = 10,
    bins: int = 50,
    dists: Sequence[str] = ("gaussian",),
    seed: int = 0,
) -> ProbeResult:
    """Squared singular values of products of m factors vs Theorem 1: KS distance, moments, histograms.

    Metrics per (dist, m): ks, moment1..3 (empirical) with fuss_catalan1..3, max_sq (largest squared
    singular value) with edge. Histogram rows: metric hist_density (empirical) and theory_density (the
    Theorem 1 mass of the bin divided by its width), key columns bin_left/bin_right, over
    [0, max(edge, max_sq)] in `bins` equal bins (the paper: N = 1000, 10 draws, 50 bins).
    """
    rows: list[dict] = []
    arrays: dict[str, np.ndarray] = {}
    for dist in dists:
        for m in ms:
            sq = products.product_singular_values(n, m, dist, draws, seed) ** 2
            key = dict(probe="rmt_spectra", layer=f"m={m}", dist=dist, m=int(m), n=int(n), draws=int(draws))
            edge = theory.theorem1_edge(m)
            rows.append(dict(key, metric="ks", value=theory.ks_distance(sq, m)))
            for k in (1, 2, 3):
                rows.append(dict(key, metric=f"moment{k}", value=float(np.mean(sq**k))))
                rows.append(dict(key, metric=f"fuss_catalan{k}", value=float(theory.fuss_catalan(m, k))))
            rows.append(dict(key, metric="max_sq", value=float(sq.max())))
            rows.append(dict(key, metric="edge", value=edge))
            counts, edges = np.histogram(sq, bins=bins, range=(0.0, max(edge, float(sq.max()))))
            width = np.diff(edges)
            emp = counts / (sq.size * width)
            th = np.diff(theory.theorem1_cdf(edges, m)) / width
            for lo, hi, e, t in zip(edges[:-1], edges[1:], emp, th):
                rows.append(dict(key, metric="hist_density", value=e, bin_left=lo, bin_right=hi))
                rows.append(dict(key, metric="theory_density", value=t, bin_left=lo, bin_right=hi))
            arrays[f"{dist}/m{m}/sq_singular_values"] = sq.reshape(-1)
    return ProbeResult.from_rows(rows, arrays, norm_stats="none")


def _products(
    probe: str, dists: Sequence[str], seeds: Sequence[int], **keys: int
) -> Iterator[tuple[str, bool, int, dict]]:
    """(dist, normalize, seed, row key) for the plain and the BN-normalized product of each distribution
    and seed (orthogonal factors: the plain product only)."""
    for dist in dists:
        for normalize in (False, True) if dist != "orthogonal" else (False,):
            product = "normalized" if normalize else "plain"
            for seed in seeds:
                key = dict(probe=probe, layer=product, dist=dist, product=product, seed=int(seed), **keys)
                yield dist, normalize, int(seed), key


def lyapunov(
    n: int = 64, depth: int = 4000, seeds: Sequence[int] = range(5), dists: Sequence[str] = ("gaussian",)
) -> ProbeResult:
    """All n exponents per (dist, seed, normalize) with the Gaussian closed form and its standard error.

    Rows: metric lambda, key columns k (1 = largest), closed_form, se, z = (lambda - closed_form)/se
    (the closed form is for Gaussian plain products; for other products it is the reference they are
    compared with), plus metric slope = lambda_1 - lambda_n.
    """
    th, se = theory.lyapunov_closed_form(n), theory.lyapunov_closed_form_se(n, depth)
    rows: list[dict] = []
    arrays: dict[str, np.ndarray] = {}
    for dist, normalize, seed, key in _products("rmt_lyapunov", dists, seeds, n=n, depth=depth):
        lam = products.lyapunov_exponents(n, depth, dist, seed, normalize=normalize)
        for k in range(n):
            rows.append(
                dict(
                    key,
                    metric="lambda",
                    value=lam[k],
                    k=k + 1,
                    closed_form=th[k],
                    se=se[k],
                    z=(lam[k] - th[k]) / se[k],
                )
            )
        rows.append(dict(key, metric="slope", value=lam[0] - lam[-1], closed_form=th[0] - th[-1]))
        arrays[f"{dist}/{key['product']}/seed{seed}"] = lam
    return ProbeResult.from_rows(rows, arrays, norm_stats="none")


def condition(
    n: int = 64,
    depth: int = 60,
    dists: Sequence[str] = ("gaussian", "uniform", "rademacher", "student_t", "orthogonal"),
    seeds: Sequence[int] = range(3),
    lyapunov_depth: int = 2000,
) -> ProbeResult:
    """ln kappa vs depth for plain, BN-normalized and orthogonal products: exact (graded), naive, Lyapunov.

    Rows: metric ln_kappa with key columns product (plain | normalized), method (exact | naive |
    lyapunov | closed_form), dist, seed, depth. lyapunov = d (lambda_1 - lambda_n) with the exponents
    from `lyapunov_depth` factors of the same stream; closed_form (Gaussian plain only) uses
    lyapunov_closed_form(n). Also metric naive_departure: the first depth where the naive value is off
    the exact one by more than 1% (NaN if never).
    """
    th = theory.lyapunov_closed_form(n)
    rows: list[dict] = []
    ds = np.arange(1, depth + 1)
    for dist, normalize, seed, key in _products("rmt_condition", dists, seeds, n=n):
        ex = products.log_condition_number(n, depth, dist, seed, exact=True, normalize=normalize)
        nv = products.naive_log_condition_number(n, depth, dist, seed, normalize=normalize)
        lam = products.lyapunov_exponents(n, max(lyapunov_depth, depth), dist, seed, normalize=normalize)
        ly = ds * (lam[0] - lam[-1])
        curves = {"exact": ex, "naive": nv, "lyapunov": ly}
        if dist == "gaussian" and not normalize:
            curves["closed_form"] = ds * (th[0] - th[-1])
        for method, vals in curves.items():
            for d, v in zip(ds, vals):
                rows.append(dict(key, metric="ln_kappa", value=v, method=method, depth=int(d)))
        off = np.nonzero(np.abs(nv - ex) > 0.01 * np.maximum(np.abs(ex), 1.0))[0]
        rows.append(dict(key, metric="naive_departure", value=float(ds[off[0]]) if off.size else np.nan))
    return ProbeResult.from_rows(rows, norm_stats="none")


def normalized(
    n: int = 256,
    ms: Sequence[int] = (1, 2, 4, 8, 16, 32),
    dists: Sequence[str] = ("gaussian",),
    seed: int = 0,
) -> ProbeResult:
    """Does BN-style standardization keep the representation's rank? ln kappa and numerical rank vs m.

    Rows per (dist, m, which in representation | product | plain): ln_kappa and rank (singular values
    above n * eps * sigma_max).
    """
    rows: list[dict] = []
    for dist in dists:
        for m in ms:
            out = products.normalized_product_spectrum(n, m, dist=dist, seed=seed)
            for which in ("representation", "product", "plain"):
                s = out[which]
                key = dict(probe="rmt_normalized", layer=which, dist=dist, m=int(m), n=n, which=which)
                rank = int(np.sum(s > n * np.finfo(float).eps * s[0]))
                rows.append(
                    dict(key, metric="ln_kappa", value=float(np.log(s[0] / s[-1])) if s[-1] > 0 else np.inf)
                )
                rows.append(dict(key, metric="rank", value=float(rank)))
    return ProbeResult.from_rows(rows, norm_stats="none")


def random_mlp(width: int, depth: int, activation: str = "linear", bn: bool = False, seed: int = 0):  # noqa: ANN201
    """A deep MLP as in the theory: `depth` bias-free width x width Linear layers, Gaussian init with
    variance 1/width (2/width for ReLU, He), optional BatchNorm1d (no affine) after each, float64.
    Module names: f"{i}.linear", f"{i}.bn", f"{i}.act" for block i (an nn.Sequential of blocks)."""
    import torch
    from torch import nn

    if activation not in ("linear", "relu", "tanh"):
        raise UserError(f"activation must be linear, relu or tanh, not {activation!r}")
    gen = torch.Generator().manual_seed(seed)
    gain = 2.0 if activation == "relu" else 1.0
    blocks = []
    for _ in range(depth):
        lin = nn.Linear(width, width, bias=False).double()
        with torch.no_grad():
            lin.weight.copy_(
                torch.randn(width, width, generator=gen, dtype=torch.float64) * np.sqrt(gain / width)
            )
        parts: dict[str, nn.Module] = {"linear": lin}
        if bn:
            parts["bn"] = nn.BatchNorm1d(width, affine=False).double()
        parts["act"] = {"linear": nn.Identity(), "relu": nn.ReLU(), "tanh": nn.Tanh()}[activation]
        blocks.append(nn.Sequential(OrderedDict(parts)))
    return nn.Sequential(*blocks)


def mlp_jacobians(
    width: int = 64,
    depths: Sequence[int] = (1, 2, 4, 6, 8, 10, 12, 16, 24, 32),
    activations: Sequence[str] = ("linear", "relu"),
    batch: int = 128,
    examples: int = 4,
    seed: int = 0,
    mode: str = "batch",
) -> ProbeResult:
    """ln kappa of the input-output Jacobian of deep linear / ReLU MLPs with and without BN, vs depth.

    One network per (activation, bn, depth) with the same seed, Gaussian inputs (batch >= 2 width),
    `examples` per-example Jacobians in `mode` (default: batch statistics, coupled), dense (width <= 512)
    so that the whole spectrum is available. Rows per example: ln_kappa (sigma_max / sigma_min, inf when
    singular), rank (singular values above width * eps * sigma_max), ln_kappa_nonzero (over those:
    ReLU Jacobians are singular per example, since dead units zero rows), ln_sigma_max. `resolved` = 0
    marks values at the float64 floor (kappa beyond ~1e13 cannot be read off a dense Jacobian); for linear
    nets without BN, metric ln_kappa_exact_product (example -1) is the exact value from the graded product.
    """
    import torch

    from bnlab.probes.jacobians import dense_jacobian
    from bnlab.probes.norm_stats import resolve_norm_stats

    gen = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(batch, width, generator=gen, dtype=torch.float64)
    rows: list[dict] = []
    tol = width * np.finfo(float).eps
    for act in activations:
        for bn in (False, True):
            for depth in depths:
                net = random_mlp(width, depth, act, bn, seed)
                jac = dense_jacobian(net, x, None, None, mode=mode, examples=range(examples))  # type: ignore[arg-type]
                for ex, j in enumerate(jac):
                    s = np.linalg.svd(j, compute_uv=False)
                    nz = s[s > tol * s[0]]
                    key = dict(
                        probe="rmt_jacobian",
                        layer="input->output",
                        activation=act,
                        bn=bool(bn),
                        depth=int(depth),
                        example=ex,
                        width=width,
                        mode=mode,
                    )
                    # below width * eps * sigma_max the smallest singular value is rounding: the value is then
                    # only a floor (resolved = 0), whether J is singular (dead ReLUs) or just ill-conditioned
                    lk = float(np.log(s[0] / s[-1])) if s[-1] > 0 else np.inf
                    resolved = float(len(nz) == len(s) and s[-1] > 1e3 * tol * s[0])
                    rows.append(dict(key, metric="ln_kappa", value=lk, resolved=resolved))
                    rows.append(dict(key, metric="rank", value=float(len(nz)), resolved=1.0))
                    rows.append(
                        dict(
                            key, metric="ln_kappa_nonzero", value=float(np.log(nz[0] / nz[-1])), resolved=1.0
                        )
                    )
                    rows.append(dict(key, metric="ln_sigma_max", value=float(np.log(s[0])), resolved=1.0))
                if act == "linear" and not bn:  # J = W_L ... W_1 for every example: exact ln kappa, any depth
                    prod = products.GradedProduct(width)
                    for block in net:
                        prod.push(block.linear.weight.detach().double().numpy())
                    key = dict(
                        probe="rmt_jacobian",
                        layer="input->output",
                        activation=act,
                        bn=False,
                        depth=int(depth),
                        example=-1,
                        width=width,
                        mode=mode,
                    )
                    rows.append(
                        dict(key, metric="ln_kappa_exact_product", value=prod.log_cond(), resolved=1.0)
                    )
    return ProbeResult.from_rows(rows, norm_stats=resolve_norm_stats(mode, "mode"))
