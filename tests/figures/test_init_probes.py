"""Figures of the probes at init: built from real probe output on a tiny net; bad input names the fix."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parents[1] / "probes"))
from nets import make  # noqa: E402

from bnlab.errors import UserError  # noqa: E402
from bnlab.figures import init_probes as figs  # noqa: E402
from bnlab.probes import PROBES  # noqa: E402


@pytest.fixture(scope="module")
def results():
    out = {}
    for label, norm in (("BN", True), ("no BN", False)):
        net, x, y = make(norm, dtype=torch.float32)
        x = x.float()
        out[label] = {
            n: PROBES.get(n)(net, x, y)
            for n in (
                "gradient_histogram",
                "activation_moments",
                "output_bias",
                "kernel_alignment",
                "gradient_spectrum",
            )
        }
    return out


def test_every_figure_builds(results):
    layer = "stages.s1.0.body.3"
    f = figs.gradient_histograms({k: r["gradient_histogram"].arrays for k, r in results.items()}, layer)
    assert len(f.axes) == 2 and f.axes[0] is not f.axes[1]
    # own axes: x-limits follow each label's own range
    assert f.axes[0].get_xlim() != f.axes[1].get_xlim()
    figs.gradient_histograms(
        {k: r["gradient_histogram"].arrays for k, r in results.items()}, layer, magnitude=True
    )
    f = figs.kernel_alignment_bars({k: r["kernel_alignment"].table for k, r in results.items()})
    assert len(f.axes) == 3
    f = figs.depth_profile({k: r["activation_moments"].table for k, r in results.items()})
    assert f.axes[0].get_xlabel().startswith("paper layer")
    f = figs.logit_gradient_heatmaps({k: r["output_bias"].arrays for k, r in results.items()})
    img = f.axes[0].images[0].get_array()
    np.testing.assert_array_equal(np.asarray(img), results["BN"]["output_bias"].arrays["dL_dz"])
    f = figs.normalized_spectra(
        {k: r["gradient_spectrum"].arrays for k, r in results.items()}, [layer, "stem.0"]
    )
    line = f.axes[0].lines[0].get_ydata()
    assert abs(line.sum() - 1) < 1e-9


def test_missing_inputs_raise(results):
    with pytest.raises(UserError):
        figs.gradient_histograms({"BN": results["BN"]["output_bias"].arrays}, "stem.0")
    with pytest.raises(UserError):
        figs.kernel_alignment_bars({"BN": results["BN"]["output_bias"].table})
    with pytest.raises(UserError):
        figs.normalized_spectra({"BN": results["BN"]["gradient_spectrum"].arrays}, ["stem.0"], matrix="x")
