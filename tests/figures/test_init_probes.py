"""Figures of the probes at init: built from real probe output on a tiny net; bad input names the fix."""

import sys
from pathlib import Path

import numpy as np
import pandas as pd
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


def test_histograms_of_several_minibatches_on_a_grid(results):
    layer = "stages.s1.0.body.3"
    one = results["BN"]["gradient_histogram"].arrays
    counts, _ = figs.rebinned([one, one], layer)
    assert counts.sum() == 2 * one[f"{layer}/hist_counts"].sum()  # re-binning keeps every entry
    f = figs.gradient_histograms(
        {"BN": [one, one], "no BN": results["no BN"]["gradient_histogram"].arrays, "none": []},
        layer,
        cells={"BN": (0, 0), "no BN": (0, 1), "none": (1, 0)},
        text={"BN": "std 1"},
    )
    assert len(f.axes) == 4 and not f.axes[3].axison  # the unused cell is blank
    assert f.axes[2].texts[0].get_text() == "no histogram arrays"


def test_heatmaps_with_top_class_shares_and_variance_by_layer(results):
    arrays = {k: r["output_bias"].arrays for k, r in results.items()}
    shares = {
        k: float(r["output_bias"].table.set_index("metric").value["top_class_share"])
        for k, r in results.items()
    }
    f = figs.logit_gradient_heatmaps(arrays, top_class_share=shares)
    np.testing.assert_array_equal(np.asarray(f.axes[0].images[0].get_array()), arrays["BN"]["dL_dz"])
    bars = [ax for ax in f.axes if ax.get_ylabel() == "top-class share"][0]
    assert [p.get_height() for p in bars.patches] == list(shares.values())
    rows = [
        {"probe": "gradient_variance", "layer": f"c{i}", "paper_layer": i, "metric": m, "value": v}
        for i in (1, 2)
        for m, v in (("intra_layer", 1e-3), ("intra_batch", 1e-2))
    ]
    f = figs.variance_by_layer({"BN": pd.DataFrame(rows)})
    assert list(f.axes[1].lines[0].get_ydata()) == [1e-2, 1e-2]
    with pytest.raises(UserError):
        figs.logit_gradient_heatmaps({})
