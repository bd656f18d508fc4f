"""Figures of the training-dynamics probes: built from probe output, checked for what they draw."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from torch import nn

from bnlab.errors import UserError
from bnlab.figures.dynamics import channel_heatmaps, lambda_lr_figure, noise_vs_scale, step_size_curves
from bnlab.probes import ProbeContext, diverging_step, hessian_top_eig, sgd_noise, step_size_scan


def tiny(norm: bool) -> nn.Module:
    torch.manual_seed(0)
    layers = [nn.Conv2d(3, 4, 3, padding=1)] + ([nn.BatchNorm2d(4)] if norm else []) + [nn.ReLU()]
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(4 * 16, 3))


def batches(k: int = 3, b: int = 8) -> list:
    g = torch.Generator().manual_seed(0)
    return [(torch.randn(b, 3, 4, 4, generator=g), torch.randint(0, 3, (b,), generator=g)) for _ in range(k)]


def test_step_size_curves_from_probe_rows() -> None:
    frames = []
    for norm in (True, False):
        for step in (1, 4):
            t = step_size_scan(tiny(norm), batches(1), ctx=ProbeContext(), directions=["gradient"]).table
            frames.append(t.assign(label="BN" if norm else "no BN", step=step))
    table = pd.concat(frames)
    table.loc[table.index[:1], "value"] = np.inf  # an overflowed loss is left out, not drawn
    fig = step_size_curves(table)
    assert isinstance(fig, Figure)
    axes = fig.axes
    assert len(axes) == 2 and [a.get_title() for a in axes] == ["BN (gradient)", "no BN (gradient)"]
    assert all(a.get_yscale() == "log" and a.get_xscale() == "log" for a in axes)
    assert len(axes[0].lines) == 3  # two steps + the r = 1 line
    assert all(np.isfinite(line.get_ydata()).all() for a in axes for line in a.lines)
    with pytest.raises(UserError):
        step_size_curves(table, direction="update")


def test_channel_heatmaps_from_diverging_step() -> None:
    model = tiny(False)
    (x, y), (x2, y2) = batches(2)
    res = diverging_step(
        model, (x, y), (x2, y2), torch.optim.SGD(model.parameters(), lr=1.0), layers=["0", "2"]
    )
    arrays = dict(res.arrays)
    fig = channel_heatmaps(arrays, note="smoke — not comparable with the paper")
    images = [a for a in fig.axes if a.images]
    assert len(images) == 4 and all(isinstance(a.images[0].norm, LogNorm) for a in images)
    assert images[0].images[0].get_array().shape == (21, 4)
    assert images[0].get_ylabel() == "% of step"
    arrays["mean/2"] = np.zeros_like(arrays["mean/2"])  # dead channels everywhere: drawn as text, no crash
    channel_heatmaps(arrays)
    with pytest.raises(UserError):
        channel_heatmaps(arrays, layers=["9"])


def test_noise_vs_scale_and_lambda_lr() -> None:
    frames, hess = [], []
    for lr in (0.01, 0.1):
        for step in (0, 5):
            model = tiny(False)
            t = sgd_noise(
                model, batches(), ctx=ProbeContext(lr=lr), per_example="running", micro_batch=2
            ).table
            frames.append(t.assign(label="no BN", run_id=f"lr{lr}", step=step))
            opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
            h = hessian_top_eig(model, batches(1), ctx=ProbeContext(optimizer=opt, lr=lr)).table
            hess.append(h.assign(label=f"lr {lr}", step=step))
    fig = noise_vs_scale(pd.concat(frames))
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert any("bound" in t.get_text() or "α²C" in t.get_text() for t in ax.get_legend().get_texts())
    fig2 = lambda_lr_figure(pd.concat(hess))
    ax2 = fig2.axes[0]
    assert ax2.get_yscale() == "log"
    limits = [line for line in ax2.lines if np.allclose(line.get_ydata(), 3.8)]
    assert len(limits) == 1  # one momentum in the data -> one limit line at 2(1 + 0.9)
    with pytest.raises(UserError):
        lambda_lr_figure(pd.concat(hess), x="epoch")
    with pytest.raises(UserError):
        noise_vs_scale(pd.concat(hess))


def test_channel_heatmaps_colour_dead_and_overflowing_cells_with_a_legend() -> None:
    """Exact zeros (dead channels) and non-finite moments get colours of their own, named in a legend; a
    layer whose channels are all exactly 0 is a grey panel that says so, never a blank one."""
    s = np.linspace(0, 1, 4)
    mean = np.random.default_rng(0).random((4, 6)) + 0.1
    mean[:, 2] = 0.0
    var = mean.copy() + 1
    var[-1, 4] = np.inf
    zero = np.zeros((4, 6))
    fig = channel_heatmaps({"s": s, "mean/a": mean, "var/a": var, "mean/b": zero, "var/b": zero})
    legend = [t.get_text() for leg in fig.legends for t in leg.get_texts()]
    assert legend == ["exactly 0 (dead channel)", "non-finite (overflow)"]
    dead_panel = (
        fig.axes[1] if fig.axes[1].get_title() == "b" else [a for a in fig.axes if a.get_title() == "b"][0]
    )
    assert dead_panel.images and "every |channel mean|\nexactly 0" in [t.get_text() for t in dead_panel.texts]
