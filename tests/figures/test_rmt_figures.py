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
    labels = [ln.get_label() for ln in fig.get_axes()[0].lines]
    assert "gaussian, exact" in labels and "closed form (Gaussian)" in labels
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
