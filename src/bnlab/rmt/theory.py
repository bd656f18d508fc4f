"""Theorem 1 of the paper: the limiting law of squared singular values of Gaussian products.

For a product of m independent N x N matrices with iid entries of variance 1/N, as N -> infinity the
squared singular values have a density on (0, (m+1)^(m+1)/m^m) given parametrically for
phi in (0, pi/(m+1)) by

    x(phi)   = sin^(m+1)((m+1) phi) / (sin(phi) sin^m(m phi))
    rho(phi) = sin^2(phi) sin^(m-1)(m phi) / (pi sin^m((m+1) phi)).

m = 1 is Marchenko-Pastur (square case). The k-th moment is the Fuss-Catalan number
C((m+1)k, k) / (mk + 1).

Numerics: x(phi) decreases from the edge (phi -> 0) to 0 (phi -> pi/(m+1)). We solve for
psi = pi/(m+1) - phi, the distance to the hard edge at x = 0, using the identities
sin((m+1) phi) = sin((m+1) psi) and sin(m phi) = sin(pi/(m+1) + m psi), so that tiny x (where the
density diverges like x^(-m/(m+1))) keeps full relative precision. The root is found by bisection in
ln psi on ln x, which is monotone, to the resolution of float64.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike

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


def _log_x_of_psi(psi: np.ndarray, m: int) -> np.ndarray:
    """ln x as a function of psi = pi/(m+1) - phi (increasing in psi)."""
    a = np.pi / (m + 1)
    return (m + 1) * np.log(np.sin((m + 1) * psi)) - np.log(np.sin(a - psi)) - m * np.log(np.sin(a + m * psi))


def theorem1_phi(x: ArrayLike, m: int) -> np.ndarray:
    """The parameter phi in (0, pi/(m+1)) with x(phi) = x, for x in (0, edge); NaN outside."""
    m = _check_m(m)
    xs = np.asarray(x, dtype=float)
    psi = _solve_psi(xs, m)
    return np.pi / (m + 1) - psi


def _solve_psi(xs: np.ndarray, m: int) -> np.ndarray:
    a = np.pi / (m + 1)
    edge = theorem1_edge(m)
    flat = xs.reshape(-1)
    inside = (flat > 0) & (flat < edge)
    out = np.full(flat.shape, np.nan)
    if not inside.any():
        return out.reshape(xs.shape)
    target = np.log(flat[inside])
    # Bracket in s = ln psi. Near psi = 0, x ~ ((m+1) psi)^(m+1) / c with c = sin^(m+1)(a) <= 1, so
    # psi_lo below exp(ln x / (m+1)) / (m+1) times a safety factor has x(psi_lo) < x.
    hi = np.full(target.shape, math.log(a))
    lo = target / (m + 1) - math.log(m + 1) - 2.0
    bad = _log_x_of_psi(np.exp(lo), m) > target
    while bad.any():  # never taken in practice; kept so the bracket is guaranteed
        lo[bad] -= 5.0
        bad = _log_x_of_psi(np.exp(lo), m) > target
    # 80 halvings shrink a bracket of width <= ~(ln(1/x)/(m+1) + 5) below float64 spacing of ln psi.
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        up = _log_x_of_psi(np.exp(mid), m) > target
        hi = np.where(up, mid, hi)
        lo = np.where(up, lo, mid)
    out[inside] = np.exp(0.5 * (lo + hi))
    return out.reshape(xs.shape)


def _rho_of_psi(psi: np.ndarray, m: int) -> np.ndarray:
    a = np.pi / (m + 1)
    s_phi = np.sin(a - psi)
    s_m = np.sin(a + m * psi)  # = sin(m phi)
    s_m1 = np.sin((m + 1) * psi)  # = sin((m+1) phi)
    return s_phi**2 * s_m ** (m - 1) / (np.pi * s_m1**m)


def theorem1_density(x: ArrayLike, m: int) -> np.ndarray:
    """Density of the squared singular values of a product of m Gaussian N x N matrices (var 1/N), N -> inf.

    Vectorized over x. Support is (0, theorem1_edge(m)); outside it (end points included) the value is 0.
    At x -> 0 the density diverges like x^(-m/(m+1)).
    """
    m = _check_m(m)
    xs = np.asarray(x, dtype=float)
    psi = _solve_psi(xs, m)
    rho = np.zeros(xs.shape)
    ok = ~np.isnan(psi)
    rho[ok] = _rho_of_psi(psi[ok], m)
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
        psi = _solve_psi(flat[inside], m)  # integrate phi from pi/(m+1) - psi to pi/(m+1)
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
