"""Random products: entry laws, Theorem 1 at finite N, QR Lyapunov spectra, exact graded condition numbers."""

import numpy as np
import pytest

from bnlab.errors import UserError
from bnlab.rmt import (
    DISTRIBUTIONS,
    GradedProduct,
    ks_distance,
    log_condition_number,
    lyapunov_closed_form,
    lyapunov_closed_form_se,
    lyapunov_exponents,
    naive_log_condition_number,
    normalized_product_spectrum,
    product_singular_values,
    sample_factors,
)
from bnlab.rmt.products import _Stream


@pytest.mark.parametrize("dist", ["gaussian", "uniform", "rademacher", "student_t", "orthogonal"])
def test_entry_laws_have_variance_one_over_n(dist):
    n = 50
    w = sample_factors(n, 200, dist, np.random.default_rng(0))
    assert w.shape == (200, n, n)
    assert abs(w.mean()) < 3 / np.sqrt(w.size) / np.sqrt(n) * 2
    assert abs(w.var() * n - 1) < 0.02
    if dist == "orthogonal":
        np.testing.assert_allclose(w[0].T @ w[0], np.eye(n), atol=1e-12)
    if dist == "rademacher":
        assert set(np.unique(np.round(w * np.sqrt(n), 12))) == {-1.0, 1.0}


def test_unknown_distribution_is_a_user_error():
    with pytest.raises(UserError, match="gaussian"):
        product_singular_values(4, 1, dist="cauchy")
    assert "student_t" in DISTRIBUTIONS.names()


def test_product_singular_values_literal_twin():
    rng = np.random.default_rng(7)
    w = rng.standard_normal((3, 20, 20)) / np.sqrt(20)
    ref = np.linalg.svd(w[2] @ w[1] @ w[0], compute_uv=False)
    np.testing.assert_allclose(
        product_singular_values(20, 3, "gaussian", draws=1, seed=7)[0], ref, rtol=1e-12
    )


@pytest.mark.parametrize("dist", ["gaussian", "rademacher"])
def test_finite_n_histogram_close_to_theorem1(dist):
    # N = 300, 2 draws: KS ~ 0.01-0.02 (finite-N edge effects); the N = 1000 < 0.01 check is slow below
    for m in (1, 3):
        sv = product_singular_values(300, m, dist, draws=2, seed=1)
        assert ks_distance(sv**2, m) < 0.03


@pytest.mark.slow
@pytest.mark.parametrize("dist", ["gaussian", "uniform", "rademacher", "student_t"])
def test_n1000_ks_below_one_percent(dist):
    for m in (1, 3, 5):
        sv = product_singular_values(1000, m, dist, draws=10, seed=0)
        assert ks_distance(sv**2, m) < 0.01, (dist, m)


def test_lyapunov_literal_twin_small_depth():
    # QR of the explicit product: diag(R) of P = W_d ... W_1 is the product of the per-step diag(R_t)
    n, depth = 6, 5
    stream = _Stream(n, "gaussian", 3, False, None)
    p = np.eye(n)
    for _ in range(depth):
        p = stream.next() @ p
    ref = np.sort(np.log(np.abs(np.diagonal(np.linalg.qr(p)[1]))) / depth)[::-1]
    np.testing.assert_allclose(lyapunov_exponents(n, depth, "gaussian", seed=3), ref, rtol=1e-10)
    # the sum of the exponents is ln|det| per factor
    assert lyapunov_exponents(n, depth, seed=3).sum() * depth == pytest.approx(
        np.linalg.slogdet(p)[1], rel=1e-10
    )


def test_lyapunov_closed_form_depth_4000():
    n, depth = 64, 4000
    th, se = lyapunov_closed_form(n), lyapunov_closed_form_se(n, depth)
    for seed in range(5):
        lam = lyapunov_exponents(n, depth, "gaussian", seed=seed)
        assert np.all(np.isfinite(lam))
        assert np.max(np.abs(lam - th) / se) < 5
        assert abs((lam[0] - lam[-1]) / (th[0] - th[-1]) - 1) < 0.02


def test_lyapunov_deep_and_orthogonal():
    lam = lyapunov_exponents(8, 10_000, "gaussian", seed=0)
    assert np.all(np.isfinite(lam))
    assert np.max(np.abs(lyapunov_exponents(16, 500, "orthogonal", seed=0))) < 1e-12


def test_exact_condition_number_matches_naive_while_naive_is_accurate():
    at = [1, 2, 3, 4, 5, 6]
    ex = log_condition_number(32, 6, "gaussian", seed=2, exact=True, at=at)
    nv = naive_log_condition_number(32, 6, "gaussian", seed=2, at=at)
    np.testing.assert_allclose(ex, nv, rtol=1e-8)


def test_exact_condition_number_against_extended_precision():
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 120
    n, depth = 8, 60
    stream = _Stream(n, "gaussian", 3, False, None)
    p = mpmath.eye(n)
    g = GradedProduct(n)
    for _ in range(depth):
        w = stream.next()
        p = mpmath.matrix(w.tolist()) * p
        g.push(w)
    sv = mpmath.svd_r(p, compute_uv=False)
    ref = float(mpmath.log(max(sv)) - mpmath.log(min(sv)))
    assert ref > 80  # far beyond what float64 SVD of the product can resolve (~37)
    assert g.log_cond() == pytest.approx(ref, rel=1e-10)
    assert log_condition_number(n, depth, seed=3, exact=True, at=[depth])[0] == pytest.approx(ref, rel=1e-10)


def test_condition_number_growth_rate_and_orthogonal():
    n, depth = 16, 2000
    th = lyapunov_closed_form(n)
    ex = log_condition_number(n, depth, "gaussian", seed=0, exact=True, at=[depth])[0]
    assert abs(ex / depth / (th[0] - th[-1]) - 1) < 0.05
    ly = log_condition_number(n, depth, "gaussian", seed=0, at=[depth])[0]
    assert abs(ly / ex - 1) < 0.05
    assert np.all(np.abs(log_condition_number(n, 300, "orthogonal", seed=0, exact=True, at=[1, 300])) < 1e-10)
    # naive loses precision: it stays near ln(1e16) ~ 37 while the truth keeps growing
    assert naive_log_condition_number(n, 200, seed=0, at=[200])[0] < 60


def test_normalized_product_literal():
    n, m, b = 10, 4, 25
    out = normalized_product_spectrum(n, m, batch=b, seed=1, matrices=True)
    x0, xm, p = out["X0"], out["Xm"], out["P"]
    np.testing.assert_allclose(xm, p @ x0, atol=1e-10)  # standardization = left multiplication by D^-1
    np.testing.assert_allclose(xm.mean(axis=1), 0, atol=1e-12)
    np.testing.assert_allclose(xm.var(axis=1), 1, rtol=1e-12)
    np.testing.assert_allclose(out["representation"], np.linalg.svd(xm / np.sqrt(b), compute_uv=False))
    assert np.sum(out["representation"] ** 2) == pytest.approx(n)
    with pytest.raises(UserError):
        normalized_product_spectrum(n, m, batch=n)


def test_normalized_lyapunov_matches_explicit_product():
    n, depth = 6, 4
    stream = _Stream(n, "gaussian", 5, True, None)
    p = np.eye(n)
    for _ in range(depth):
        p = stream.next() @ p
    ref = np.sort(np.log(np.abs(np.diagonal(np.linalg.qr(p)[1]))) / depth)[::-1]
    np.testing.assert_allclose(lyapunov_exponents(n, depth, seed=5, normalize=True), ref, rtol=1e-10)
    lam = lyapunov_exponents(16, 3000, seed=0, normalize=True)
    assert np.all(np.isfinite(lam))
