"""Theorem 1 density: a density, Fuss-Catalan moments, Marchenko-Pastur at m = 1, CDF vs literal quadrature."""

import math

import numpy as np
import pytest
from scipy import integrate

from bnlab.errors import UserError
from bnlab.rmt import (
    fuss_catalan,
    ks_distance,
    theorem1_cdf,
    theorem1_density,
    theorem1_edge,
    theorem1_moment,
    theorem1_phi,
)
from bnlab.rmt.theory import _x_of_phi


def test_fuss_catalan_literal():
    assert [fuss_catalan(1, k) for k in range(6)] == [1, 1, 2, 5, 14, 42]  # Catalan numbers
    assert [fuss_catalan(2, k) for k in range(5)] == [1, 1, 3, 12, 55]
    for m in range(1, 9):
        for k in range(5):
            assert fuss_catalan(m, k) == math.comb((m + 1) * k, k) / (m * k + 1)
    assert theorem1_edge(1) == 4.0 and theorem1_edge(2) == 27 / 4


def test_marchenko_pastur():
    x = np.linspace(1e-6, 4 - 1e-6, 101)
    np.testing.assert_allclose(theorem1_density(x, 1), np.sqrt(x * (4 - x)) / (2 * np.pi * x), rtol=1e-12)


def test_inversion_recovers_phi():
    for m in (1, 3, 8):
        phi = np.linspace(1e-3, np.pi / (m + 1) - 1e-6, 50)
        np.testing.assert_allclose(theorem1_phi(_x_of_phi(phi, m), m), phi, rtol=0, atol=1e-10)
        # the parametric density at the recovered phi equals the literal formula
        rho = np.sin(phi) ** 2 * np.sin(m * phi) ** (m - 1) / (np.pi * np.sin((m + 1) * phi) ** m)
        np.testing.assert_allclose(theorem1_density(_x_of_phi(phi, m), m), rho, rtol=1e-8)


@pytest.mark.parametrize("m", range(1, 9))
def test_density_normalized_and_moments(m):
    edge = theorem1_edge(m)
    # literal reference: adaptive quadrature in x after the substitution x = t^(2(m+1)) that removes the
    # x^(-m/(m+1)) singularity at 0
    k = 2 * (m + 1)
    f = lambda t, p: float(theorem1_density(t**k, m)) * k * t ** (k - 1) * t ** (k * p)  # noqa: E731
    for p in range(4):
        val, _ = integrate.quad(f, 0, edge ** (1 / k), args=(p,), limit=200, epsabs=1e-11)
        assert abs(val - fuss_catalan(m, p)) < 1e-6 * fuss_catalan(m, p), (m, p, val)
        assert abs(theorem1_moment(p, m) - fuss_catalan(m, p)) < 1e-10 * fuss_catalan(m, p)


def test_cdf_matches_quadrature_and_is_monotone():
    for m in (1, 4):
        edge = theorem1_edge(m)
        xs = np.array([1e-8, 0.1, 0.5, 1.0, edge / 2, edge - 1e-3])
        k = 2 * (m + 1)
        for x in xs:
            ref, _ = integrate.quad(
                lambda t, k=k, m=m: float(theorem1_density(t**k, m)) * k * t ** (k - 1),
                0,
                x ** (1 / k),
                epsabs=1e-12,
            )
            assert abs(theorem1_cdf(x, m) - ref) < 1e-8
        grid = np.linspace(-1, edge + 1, 500)
        cdf = theorem1_cdf(grid, m)
        assert np.all(np.diff(cdf) >= 0) and cdf[0] == 0 and cdf[-1] == 1


def test_density_outside_support_is_zero():
    assert np.all(theorem1_density(np.array([-1.0, 0.0, 4.0, 5.0]), 1) == 0)


def test_ks_distance_literal():
    s = np.array([0.5, 1.0, 2.0, 3.0])
    f = theorem1_cdf(s, 1)
    emp_hi = np.arange(1, 5) / 4
    emp_lo = np.arange(0, 4) / 4
    assert ks_distance(s, 1) == pytest.approx(max(np.max(np.abs(emp_hi - f)), np.max(np.abs(f - emp_lo))))


def test_bad_m():
    with pytest.raises(UserError):
        theorem1_density(1.0, 0)
