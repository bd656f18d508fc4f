"""Theorem 1 of the paper: the limiting law of squared singular values of Gaussian products.

For a product of m independent N x N matrices with iid entries of variance 1/N, as N -> infinity the
squared singular values have a density on (0, (m+1)^(m+1)/m^m) given parametrically for
phi in (0, pi/(m+1)) by

    x(phi)   = sin^(m+1)((m+1) phi) / (sin(phi) sin^m(m phi))
    rho(phi) = sin^2(phi) sin^(m-1)(m phi) / (pi sin^m((m+1) phi)).

m = 1 is Marchenko-Pastur (square case). The k-th moment is the Fuss-Catalan number
C((m+1)k, k) / (mk + 1).

Numerics: x(phi) decreases from the edge (phi -> 0) to 0 (phi -> pi/(m+1)). We solve for the smaller
of phi and psi = pi/(m+1) - phi, by bisection in its logarithm on ln x (monotone), and evaluate the
sines in forms without cancellation (sin((m+1) phi) = sin((m+1) psi), sin(m phi) = sin(pi/(m+1) + m psi)),
so that both tiny x (where the density diverges like x^(-m/(m+1))) and x next to the edge keep full
relative precision.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import zeta

from bnlab.errors import UserError

# Gauss-Legendre nodes for the CDF and moment integrals: the integrand in phi is analytic on the
# closed interval, so 64 nodes already give ~1e-15.
_GL_NODES, _GL_WEIGHTS = np.polynomial.legendre.leggauss(64)


def _check_m(m: int) -> int:
    if int(m) != m or m < 1:
        raise UserError(f"the number of factors m must be a positive integer, got {m!r}")
    return int(m)


def theorem1_edge(m: int) -> float:
    """Right edge of the support of the squared singular values: (m+1)^(m+1) / m^m."""
    m = _check_m(m)
    return float((m + 1) ** (m + 1) / m**m)


def fuss_catalan(m: int, k: int) -> int:
    """k-th moment of the Theorem 1 density: the Fuss-Catalan number C((m+1)k, k) / (mk + 1)."""
    m = _check_m(m)
    if int(k) != k or k < 0:
        raise UserError(f"the moment order k must be a non-negative integer, got {k!r}")
    k = int(k)
    return math.comb((m + 1) * k, k) // (m * k + 1)


def _sines(phi: np.ndarray, psi: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """sin(phi), sin(m phi), sin((m+1) phi), each from the form whose argument keeps full precision.

    phi + psi = pi/(m+1). Near the hard edge (psi small) sin((m+1) phi) = sin((m+1) psi) and
    sin(m phi) = sin(pi/(m+1) + m psi); near the soft edge (phi small) the phi forms are exact.
    """
    a = np.pi / (m + 1)
    near_zero = psi <= a / 2
    s1 = np.sin(phi)
    sm = np.where(near_zero, np.sin(a + m * psi), np.sin(m * phi))
    sm1 = np.where(near_zero, np.sin((m + 1) * psi), np.sin((m + 1) * phi))
    return s1, sm, sm1


def _log_x(phi: np.ndarray, psi: np.ndarray, m: int) -> np.ndarray:
    s1, sm, sm1 = _sines(phi, psi, m)
    return (m + 1) * np.log(sm1) - np.log(s1) - m * np.log(sm)


def theorem1_phi(x: ArrayLike, m: int) -> np.ndarray:
    """The parameter phi in (0, pi/(m+1)) with x(phi) = x, for x in (0, edge); NaN outside."""
    m = _check_m(m)
    return _solve(np.asarray(x, dtype=float), m)[0]


def _bisect(
    target: np.ndarray, lo: np.ndarray, hi: np.ndarray, f: Callable[[np.ndarray], np.ndarray]
) -> np.ndarray:
    """Root of the increasing function f(s) = target in [lo, hi], by 80 halvings (below float64 spacing)."""
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        up = f(mid) > target
        hi = np.where(up, mid, hi)
        lo = np.where(up, lo, mid)
    return 0.5 * (lo + hi)


def _solve(xs: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """(phi, psi = pi/(m+1) - phi) with x(phi) = xs, both to full relative precision; NaN outside (0, edge).

    x is split at x(a/2): on the hard-edge side we bisect in ln psi, on the soft-edge side in ln phi, so
    the small one of the two angles is the unknown and the other is formed without cancellation.
    """
    a = np.pi / (m + 1)
    edge = theorem1_edge(m)
    flat = xs.reshape(-1)
    phi = np.full(flat.shape, np.nan)
    psi = np.full(flat.shape, np.nan)
    half = np.array([a / 2])
    ln_mid = float(_log_x(half, half, m)[0])
    ln_x = np.log(np.where((flat > 0) & (flat < edge), flat, np.nan))
    low = ln_x <= ln_mid  # hard-edge side: psi <= a/2
    high = ln_x > ln_mid  # soft-edge side: phi < a/2
    if low.any():
        t = ln_x[low]
        # Near psi = 0, x ~ ((m+1) psi)^(m+1) / sin^(m+1)(a), and sin(a) <= 1, so this psi is low enough.
        lo = t / (m + 1) - np.log(m + 1) - 2.0

        def f_low(s: np.ndarray) -> np.ndarray:
            p = np.exp(s)
            return _log_x(a - p, p, m)

        bad = f_low(lo) > t
        while bad.any():  # never taken in practice; keeps the bracket guaranteed
            lo[bad] -= 5.0
            bad = f_low(lo) > t
        p = np.exp(_bisect(t, lo, np.full(t.shape, np.log(a / 2)), f_low))
        psi[low], phi[low] = p, a - p
    if high.any():
        # -ln(x/edge) > 0, formed without rounding of x - edge (Sterbenz: exact for x near edge)
        t = -np.log1p((flat[high] - edge) / edge)
        # _soft_gap(phi) = -ln(x(phi)/edge) is increasing in phi and ~ c phi^2 with c <= (m+1)^3 / 6
        # (leading series term), so phi_lo below sqrt(t / (m+1)^3) / 2 is low enough.
        lo = 0.5 * np.log(np.maximum(t, 1e-300)) - 1.5 * np.log(m + 1) - np.log(2.0)

        def f_high(s: np.ndarray) -> np.ndarray:
            return _soft_gap(np.exp(s), m)

        bad = f_high(lo) > t
        while bad.any():
            lo[bad] -= 5.0
            bad = f_high(lo) > t
        p = np.exp(_bisect(t, lo, np.full(t.shape, np.log(a / 2)), f_high))
        phi[high], psi[high] = p, a - p
    return phi.reshape(xs.shape), psi.reshape(xs.shape)


# ln(sin z / z) = -sum_j zeta(2j) z^(2j) / (j pi^(2j)): 30 terms reach 1e-17 for z <= pi/2.
_SERIES_J = np.arange(1, 31)
_SERIES_C = zeta(2.0 * _SERIES_J) / (_SERIES_J * np.pi ** (2.0 * _SERIES_J))


def _soft_gap(phi: np.ndarray, m: int) -> np.ndarray:
    """-ln(x(phi) / edge) for phi <= pi/(2(m+1)), as a series of positive terms (no cancellation).

    ln x - ln edge = (m+1) ln sinc((m+1)phi) - ln sinc(phi) - m ln sinc(m phi) with sinc z = sin z / z.
    """
    j = _SERIES_J
    weights = _SERIES_C * ((m + 1.0) ** (2 * j + 1) - 1.0 - float(m) ** (2 * j + 1))
    z = phi**2
    acc = np.zeros_like(z)
    for w in weights[::-1]:  # Horner in phi^2
        acc = (acc + w) * z
    return acc


def _rho(phi: np.ndarray, psi: np.ndarray, m: int) -> np.ndarray:
    s1, sm, sm1 = _sines(phi, psi, m)
    return s1**2 * sm ** (m - 1) / (np.pi * sm1**m)


def theorem1_density(x: ArrayLike, m: int) -> np.ndarray:
    """Density of the squared singular values of a product of m Gaussian N x N matrices (var 1/N), N -> inf.

    Vectorized over x. Support is (0, theorem1_edge(m)); outside it (end points included) the value is 0.
    At x -> 0 the density diverges like x^(-m/(m+1)); at the edge it vanishes like sqrt(edge - x).
    """
    m = _check_m(m)
    xs = np.asarray(x, dtype=float)
    phi, psi = _solve(xs, m)
    rho = np.zeros(xs.shape)
    ok = ~np.isnan(phi)
    rho[ok] = _rho(phi[ok], psi[ok], m)
    return rho


def _mass_integrand(phi: np.ndarray, m: int) -> np.ndarray:
    """rho(x) |dx/dphi| as a function of phi: analytic on [0, pi/(m+1)] (removable point at 0).

    rho * x = sin(phi) sin((m+1)phi) / (pi sin(m phi)), and d ln x / d phi =
    (m+1)^2 cot((m+1)phi) - cot(phi) - m^2 cot(m phi).
    """
    s1, c1 = np.sin(phi), np.cos(phi)
    sm, cm = np.sin(m * phi), np.cos(m * phi)
    sm1, cm1 = np.sin((m + 1) * phi), np.cos((m + 1) * phi)
    dx_rho = ((m + 1) ** 2 * s1 * cm1 / sm - c1 * sm1 / sm - m**2 * s1 * sm1 * cm / sm**2) / np.pi
    return -dx_rho  # x decreases in phi


def _x_of_phi(phi: np.ndarray, m: int) -> np.ndarray:
    return np.sin((m + 1) * phi) ** (m + 1) / (np.sin(phi) * np.sin(m * phi) ** m)


def theorem1_cdf(x: ArrayLike, m: int) -> np.ndarray:
    """P(X <= x) under the Theorem 1 law, by Gauss-Legendre integration of the density in phi.

    F(x) = integral over phi in (phi(x), pi/(m+1)) of rho |dx/dphi|; the integrand is analytic, so the
    result is accurate to ~1e-14. 0 for x <= 0 and 1 for x >= edge.
    """
    m = _check_m(m)
    xs = np.asarray(x, dtype=float)
    flat = xs.reshape(-1)
    out = np.where(flat <= 0, 0.0, 1.0)
    inside = (flat > 0) & (flat < theorem1_edge(m))
    if inside.any():
        psi = _solve(flat[inside], m)[1]  # integrate phi from pi/(m+1) - psi to pi/(m+1)
        a = np.pi / (m + 1)
        nodes = a - psi[:, None] * 0.5 * (1.0 + _GL_NODES[None, :])
        vals = _mass_integrand(nodes, m)
        out[inside] = 0.5 * psi * (vals @ _GL_WEIGHTS)
    return out.reshape(xs.shape)


def theorem1_moment(k: int, m: int, pieces: int = 8) -> float:
    """k-th moment of the Theorem 1 density by quadrature in phi (checks fuss_catalan)."""
    m = _check_m(m)
    edges = np.linspace(0.0, np.pi / (m + 1), pieces + 1)
    total = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        phi = lo + (hi - lo) * 0.5 * (1.0 + _GL_NODES)
        total += 0.5 * (hi - lo) * float((_x_of_phi(phi, m) ** k * _mass_integrand(phi, m)) @ _GL_WEIGHTS)
    return total


def ks_distance(samples: ArrayLike, m: int) -> float:
    """Kolmogorov-Smirnov distance sup |F_emp - F| between squared singular values and Theorem 1."""
    s = np.sort(np.asarray(samples, dtype=float).reshape(-1))
    if s.size == 0:
        raise UserError("ks_distance needs at least one sample")
    f = theorem1_cdf(s, m)
    k = np.arange(1, s.size + 1)
    return float(max(np.max(k / s.size - f), np.max(f - (k - 1) / s.size)))


def lyapunov_closed_form(n: int) -> np.ndarray:
    """Lyapunov exponents (per factor, descending) of products of n x n Gaussian matrices with var 1/n.

    lambda_k = 1/2 [ln(2/n) + digamma((n-k+1)/2)]: in the QR recursion R_kk^2 ~ chi^2_{n-k+1} / n.
    """
    from scipy.special import digamma

    if int(n) != n or n < 1:
        raise UserError(f"the matrix size n must be a positive integer, got {n!r}")
    k = np.arange(1, n + 1)
    return 0.5 * (np.log(2.0 / n) + digamma((n - k + 1) / 2.0))


def lyapunov_closed_form_se(n: int, depth: int) -> np.ndarray:
    """Standard error of each exponent estimated from `depth` factors: sqrt(trigamma((n-k+1)/2)/depth)/2."""
    from scipy.special import polygamma

    k = np.arange(1, n + 1)
    return 0.5 * np.sqrt(polygamma(1, (n - k + 1) / 2.0) / depth)
