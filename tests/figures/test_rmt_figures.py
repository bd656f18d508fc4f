"""E10 figures: built from study tables; check what they draw."""

import numpy as np
import pytest
import torch

from bnlab.errors import UserError
from bnlab.figures import rmt as figs
from bnlab.rmt import study


def test_spectra_figure_draws_histogram_curve_and_ks():
    table = study.spectra(n=50, ms=(1, 3), draws=1, bins=7).table
    fig = figs.spectra_figure(table)
    axes = fig.get_axes()
    assert len(axes) == 2
    assert len(axes[0].patches) == 7 and len(axes[0].lines) == 1
    ks = table[(table["metric"] == "ks") & (table["m"] == 3)]["value"].iloc[0]
    assert f"{ks:.4f}" in axes[1].get_title() and f"{ks:.4f}" in fig._suptitle.get_text()
    with pytest.raises(UserError):
        figs.spectra_figure(table, dist="uniform")


def test_condition_lyapunov_universality_figures():
    c = study.condition(n=8, depth=10, dists=("gaussian", "orthogonal"), seeds=(0,), lyapunov_depth=50).table
    fig = figs.condition_figure(c)
    assert len(fig.get_axes()) == 2
    legend = [t.get_text() for leg in fig.legends for t in leg.get_texts()]
    # colour per distribution, line style per method: two short legends, not one entry per curve
    assert legend == [
        "gaussian",
        "orthogonal",
        "exact (graded QR)",
        "naive SVD",
        "Lyapunov",
        "closed form (Gaussian)",
    ]
    ly = study.lyapunov(n=8, depth=30, seeds=(0,)).table
    assert len(figs.lyapunov_figure(ly).get_axes()[0].lines) == 3  # plain, normalized, closed form
    sp = study.spectra(n=30, ms=(1,), draws=1, bins=4, dists=("gaussian", "uniform")).table
    assert len(figs.universality_figure(sp).get_axes()[0].patches) == 2


def test_jacobian_figure_marks_float_floor():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        t = study.mlp_jacobians(
            width=8, depths=(1, 2), activations=("relu", "linear"), batch=16, examples=1
        ).table
    finally:
        torch.set_num_threads(old)
    fig = figs.jacobian_figure(t)
    relu, linear = fig.get_axes()
    labels = [ln.get_label() for ln in relu.lines]
    # per-example ReLU Jacobians are singular: all-sv kappa only as hollow floor markers, never a line
    assert "no BN, all sv" not in labels and "no BN: beyond float64 floor" in labels
    assert "no BN, exact product" in [ln.get_label() for ln in linear.lines]
    for line in relu.lines + linear.lines:
        assert np.all(np.isfinite(np.asarray(line.get_ydata(), float)))
    with pytest.raises(UserError):
        figs.jacobian_figure(t.assign(probe="other"))


def test_condition_figure_stops_a_curve_at_a_factor_singular_to_float64():
    """Rademacher ±1 factors (n = 16, seed 0, normalized stream) include exactly singular ones (integer rank 15
    at depth 14): ln κ jumps by ~ln(1/eps); the curve stops there with a marker instead of drawing the jump."""
    c = study.condition(n=16, depth=16, dists=("rademacher",), seeds=(0,), lyapunov_depth=20).table
    exact = c[(c["metric"] == "ln_kappa") & (c["method"] == "exact") & (c["product"] == "normalized")]
    v = exact.sort_values("depth")["value"].to_numpy(float)
    assert np.diff(v).max() > figs.SINGULAR_JUMP  # the jump is in the data
    fig = figs.condition_figure(c)
    legend = [t.get_text() for leg in fig.legends for t in leg.get_texts()]
    assert "a factor singular to float64: κ = ∞" in legend
    ax = fig.get_axes()[1]
    drawn = [ln for ln in ax.lines if ln.get_linestyle() == "-" and len(ln.get_xdata()) > 1]
    assert all(np.diff(np.asarray(ln.get_ydata(), float)).max() < figs.SINGULAR_JUMP for ln in drawn)
