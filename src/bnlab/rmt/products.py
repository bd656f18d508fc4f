"""Products of random matrices: singular values, BN-normalized products, Lyapunov spectra, condition numbers.

Every factor is n x n with iid entries of variance 1/n (or Haar orthogonal), so the top Lyapunov exponent
is ~0 and products never overflow; what fails is precision: a naive product followed by an SVD cannot
resolve a condition number beyond ~1e16 (depth ~14 at n = 64). Long products are therefore
accumulated with QR (Lyapunov exponents) or kept in graded form U diag(exp(d)) V (exact condition
numbers), with d stored as logarithms.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from bnlab.errors import UserError
from bnlab.registry import Registry

Sampler = Callable[[np.random.Generator, int, tuple[int, ...]], np.ndarray]

# Entry distributions: sampler(rng, n, shape) -> array of that shape, entries iid with mean 0, variance 1/n.
DISTRIBUTIONS: Registry[Sampler] = Registry("entry distribution")

# Student-t degrees of freedom: nu > 4 keeps the fourth moment finite (needed for the universality of
# the limit law); nu = 5 is the heaviest tail allowed with a margin.
STUDENT_T_DF = 5.0


@DISTRIBUTIONS.register("gaussian")
def _gaussian(rng: np.random.Generator, n: int, shape: tuple[int, ...]) -> np.ndarray:
    """iid N(0, 1/n) entries."""
    return rng.standard_normal(shape) / np.sqrt(n)


@DISTRIBUTIONS.register("uniform")
def _uniform(rng: np.random.Generator, n: int, shape: tuple[int, ...]) -> np.ndarray:
    """iid uniform on [-sqrt(3/n), sqrt(3/n)] (variance 1/n)."""
    return rng.uniform(-1.0, 1.0, shape) * np.sqrt(3.0 / n)


@DISTRIBUTIONS.register("rademacher")
def _rademacher(rng: np.random.Generator, n: int, shape: tuple[int, ...]) -> np.ndarray:
    """iid +-1/sqrt(n) with equal probability."""
    return (2.0 * rng.integers(0, 2, shape) - 1.0) / np.sqrt(n)


@DISTRIBUTIONS.register("student_t")
def _student_t(rng: np.random.Generator, n: int, shape: tuple[int, ...]) -> np.ndarray:
    """iid Student-t with nu = 5 degrees of freedom, rescaled to variance 1/n (t_nu has var nu/(nu-2))."""
    nu = STUDENT_T_DF
    return rng.standard_t(nu, shape) * np.sqrt((nu - 2.0) / nu / n)


@DISTRIBUTIONS.register("orthogonal")
def _orthogonal(rng: np.random.Generator, n: int, shape: tuple[int, ...]) -> np.ndarray:
    """Haar orthogonal factors (QR of a Gaussian matrix with the signs of diag(R) moved into Q)."""
    g = rng.standard_normal(shape)
    q, r = np.linalg.qr(g)
    return q * np.sign(np.diagonal(r, axis1=-2, axis2=-1))[..., None, :]


def sample_factors(n: int, count: int, dist: str, rng: np.random.Generator) -> np.ndarray:
    """`count` independent n x n factors, shape (count, n, n)."""
    _check_pos("n", n)
    return DISTRIBUTIONS.get(dist)(rng, n, (count, n, n))


def _check_pos(name: str, v: int) -> None:
    if int(v) != v or v < 1:
        raise UserError(f"{name} must be a positive integer, got {v!r}")


def product_singular_values(
    n: int, m: int, dist: str = "gaussian", draws: int = 1, seed: int = 0
) -> np.ndarray:
    """Singular values of `draws` independent products W_m ... W_1 of n x n factors, shape (draws, n).

    Entries have variance 1/n, so as n -> inf the squared values follow theorem1_density(., m) for every
    entry law with a finite fourth moment (universality). Naive product + SVD: fine for the histogram
    (the values lost below ~1e-16 * sigma_max are a vanishing fraction), not for condition numbers.
    """
    _check_pos("m", m)
    _check_pos("draws", draws)
    rng = np.random.default_rng(seed)
    out = np.empty((draws, n))
    for d in range(draws):
        w = sample_factors(n, m, dist, rng)
        p = w[0]
        for layer in range(1, m):
            p = w[layer] @ p
        out[d] = np.linalg.svd(p, compute_uv=False)
    return out


def _standardize_rows(x: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """BN without affine parameters: every coordinate (row) to mean 0, variance 1 over the batch (columns)."""
    mu = x.mean(axis=1, keepdims=True)
    sd = np.sqrt(x.var(axis=1, keepdims=True) + eps)
    return (x - mu) / sd, sd[:, 0]


def normalized_product_spectrum(
    n: int,
    m: int,
    batch: int | None = None,
    dist: str = "gaussian",
    seed: int = 0,
    eps: float = 0.0,
    *,
    matrices: bool = False,
) -> dict[str, np.ndarray]:
    """The BN analogue of a product: standardize every coordinate over the batch after each factor.

    X_0 is an n x B Gaussian batch (B >= 2n, default 2n), centred; X_l = D_l^-1 (W_l X_{l-1} - mean)
    with D_l the per-coordinate batch standard deviations. Since centring commutes with linear maps,
    X_m = P X_0 with P = prod D_l^-1 W_l exactly.

    Returns singular values (descending) of:
      representation  X_m / sqrt(B)   (rows have unit variance, so the squares sum to n)
      product         P               (the rescaled factors)
      plain           W_m ... W_1     (same factors, no normalization)
      input           X_0 / sqrt(B)
    and `scales` (m, n): the D_l. matrices=True adds X0, Xm and P themselves.
    """
    _check_pos("m", m)
    batch = 2 * n if batch is None else batch
    if batch < 2 * n:
        raise UserError(
            f"the batch must have at least 2n = {2 * n} examples so X_0 has full rank, got {batch}"
        )
    rng = np.random.default_rng(seed)
    x0 = rng.standard_normal((n, batch))
    x0 = x0 - x0.mean(axis=1, keepdims=True)
    w = sample_factors(n, m, dist, rng)
    x, p, plain = x0, np.eye(n), np.eye(n)
    scales = np.empty((m, n))
    for layer in range(m):
        x, sd = _standardize_rows(w[layer] @ x, eps)
        scales[layer] = sd
        p = (w[layer] / sd[:, None]) @ p
        plain = w[layer] @ plain
    sv = lambda a: np.linalg.svd(a, compute_uv=False)  # noqa: E731
    out = {
        "representation": sv(x / np.sqrt(batch)),
        "product": sv(p),
        "plain": sv(plain),
        "input": sv(x0 / np.sqrt(batch)),
        "scales": scales,
    }
    if matrices:
        out.update(X0=x0, Xm=x, P=p)
    return out


class _Stream:
    """Factors one at a time, generated in chunks (one RNG call per chunk), optionally BN-rescaled.

    With normalize=True each factor W is replaced by D^-1 W where D holds the batch standard deviations of
    W X for a batch X propagated (and standardized) alongside. X collapses towards the top singular
    direction as depth grows, but D depends only on its dominant part, which float64 keeps.
    """

    def __init__(self, n: int, dist: str, seed: int, normalize: bool, batch: int | None, chunk: int = 256):
        DISTRIBUTIONS.get(dist)  # unknown name -> UserError now, not mid-loop
        self.n, self.dist, self.normalize, self.chunk = n, dist, normalize, chunk
        self.rng = np.random.default_rng(seed)
        self.buf: np.ndarray = np.empty((0, n, n))
        self.i = 0
        if normalize:
            b = 2 * n if batch is None else batch
            if b < 2 * n:
                raise UserError(f"the batch must have at least 2n = {2 * n} examples, got {b}")
            x = self.rng.standard_normal((n, b))
            self.x = x - x.mean(axis=1, keepdims=True)

    def next(self) -> np.ndarray:
        if self.i == len(self.buf):
            self.buf, self.i = sample_factors(self.n, self.chunk, self.dist, self.rng), 0
        w = self.buf[self.i]
        self.i += 1
        if self.normalize:
            self.x, sd = _standardize_rows(w @ self.x, 0.0)
            w = w / sd[:, None]
        return w


def lyapunov_exponents(
    n: int,
    depth: int,
    dist: str = "gaussian",
    seed: int = 0,
    *,
    normalize: bool = False,
    batch: int | None = None,
) -> np.ndarray:
    """All n Lyapunov exponents per factor (descending) of W_depth ... W_1, by QR accumulation in float64.

    Q_0 = I; W_t Q_{t-1} = Q_t R_t; lambda_k = mean_t ln|R_t[k, k]|. Never overflows (only logs are
    summed), so depth 1e4 and beyond is fine. For Gaussian factors compare with lyapunov_closed_form(n).
    normalize=True uses the BN-rescaled factors D_t^-1 W_t (see normalized_product_spectrum).
    """
    _check_pos("n", n)
    _check_pos("depth", depth)
    stream = _Stream(n, dist, seed, normalize, batch)
    q = np.eye(n)
    acc = np.zeros(n)
    for _ in range(depth):
        q, r = np.linalg.qr(stream.next() @ q)
        acc += np.log(np.abs(np.diagonal(r)))
    return np.sort(acc / depth)[::-1]


class GradedProduct:
    """A long matrix product held as U diag(exp(log_d)) V: U orthogonal, V well-conditioned, log_d graded.

    Update with W (left-multiplication) by pre-pivoted QR (Bai, Lee, Li, Xu 2011): order the columns of
    W U by ln(column norm) + log_d, QR them without pivoting, and fold the triangle back with the scale
    ratios exp(log_d_j - log_d_i) formed in logs, so nothing overflows however long the product.
    """

    def __init__(self, n: int):
        self.u = np.eye(n)
        self.log_d = np.zeros(n)
        self.v = np.eye(n)

    def push(self, w: np.ndarray) -> None:
        m = w @ self.u
        key = np.log(np.linalg.norm(m, axis=0)) + self.log_d
        perm = np.argsort(-key, kind="stable")
        q, r = np.linalg.qr(m[:, perm])
        ld = self.log_d[perm]
        diag = np.abs(np.diagonal(r))
        # T_ij = R_ij d_j / (|R_ii| d_i), j >= i: bounded because the columns were ordered by weight.
        ratio = np.exp(np.minimum(ld[None, :] - ld[:, None], 700.0))
        t = np.triu(r / diag[:, None] * ratio)
        self.u = q
        self.log_d = np.log(diag) + ld
        self.v = t @ self.v[perm, :]

    def log_norm(self) -> float:
        """ln ||P||_2 (largest singular values are computed to relative accuracy in any scaling)."""
        a = float(self.log_d.max())
        return a + float(np.log(np.linalg.norm(np.exp(self.log_d - a)[:, None] * self.v, 2)))

    def log_inv_norm(self) -> float:
        """ln ||P^-1||_2 = -ln sigma_min(P); P^-1 = V^-1 diag(exp(-log_d)) U^T."""
        b = float((-self.log_d).max())
        vinv = np.linalg.inv(self.v)  # V is well-conditioned by construction
        return b + float(np.log(np.linalg.norm(vinv * np.exp(-self.log_d - b)[None, :], 2)))

    def log_cond(self) -> float:
        """ln kappa(P) = ln ||P|| + ln ||P^-1||."""
        return self.log_norm() + self.log_inv_norm()


class _ExplicitProduct:
    """The product held as one matrix, ln kappa from numpy's SVD: loses precision once kappa passes ~1e16."""

    def __init__(self, n: int):
        self.p = np.eye(n)

    def push(self, w: np.ndarray) -> None:
        self.p = w @ self.p

    def log_cond(self) -> float:
        s = np.linalg.svd(self.p, compute_uv=False)
        return np.log(s[0]) - np.log(s[-1]) if s[-1] > 0 else np.inf


def log_condition_number(
    n: int,
    depth: int,
    dist: str = "gaussian",
    seed: int = 0,
    *,
    exact: bool = False,
    normalize: bool = False,
    batch: int | None = None,
    at: Sequence[int] | None = None,
) -> np.ndarray:
    """ln kappa of the product of the first d factors, for d in `at` (default 1..depth).

    exact=False: the asymptotic (Lyapunov) estimate d * (lambda_1 - lambda_n), with the exponents
    measured by QR accumulation on this product's `depth` factors. exact=True: the finite product's
    ln kappa, from the graded U D V form (accurate however large kappa is).
    """
    _check_pos("n", n)
    _check_pos("depth", depth)
    ds = _depths(depth, at)
    if not exact:
        lam = lyapunov_exponents(n, depth, dist, seed, normalize=normalize, batch=batch)
        return ds * (lam[0] - lam[-1])
    return _log_conds(GradedProduct(n), _Stream(n, dist, seed, normalize, batch), ds)


def naive_log_condition_number(
    n: int,
    depth: int,
    dist: str = "gaussian",
    seed: int = 0,
    *,
    normalize: bool = False,
    batch: int | None = None,
    at: Sequence[int] | None = None,
) -> np.ndarray:
    """ln kappa from the explicit product and numpy's SVD: the reference that loses precision past ~1e16.

    Same factors (same seed) as log_condition_number, so the two can be compared depth by depth.
    """
    return _log_conds(_ExplicitProduct(n), _Stream(n, dist, seed, normalize, batch), _depths(depth, at))


def _depths(depth: int, at: Sequence[int] | None) -> np.ndarray:
    """The sorted distinct depths of `at` (default 1..depth), each in 1..depth."""
    ds = np.arange(1, depth + 1) if at is None else np.asarray(sorted(set(int(a) for a in at)))
    if ds.size and (ds[0] < 1 or ds[-1] > depth):
        raise UserError(f"depths in `at` must lie in 1..{depth}")
    return ds


def _log_conds(prod: GradedProduct | _ExplicitProduct, stream: _Stream, ds: np.ndarray) -> np.ndarray:
    """ln kappa of the product of the first d factors of `stream`, for each d in the sorted `ds`."""
    wanted = set(ds.tolist())
    out = []
    for d in range(1, int(ds[-1]) + 1 if ds.size else 1):
        prod.push(stream.next())
        if d in wanted:
            out.append(prod.log_cond())
    return np.asarray(out)
