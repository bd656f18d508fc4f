"""analyses.probe_rows' per-block helpers against hand-computed tables."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bnlab.analyses.probe_rows import block_mean_se, with_block_index


def test_with_block_index_numbers_layers_in_each_runs_order():
    t = pd.DataFrame(
        {
            "run_id": ["a", "a", "a", "b", "b"],
            "layer": ["x", "x", "y", "y", "x"],
            "metric": ["m", "n", "m", "m", "m"],
            "value": [1.0, 2.0, 3.0, 4.0, 5.0],
        }
    )
    got = with_block_index(t).set_index(["run_id", "layer", "metric"])["block"]
    assert got.to_dict() == {
        ("a", "x", "m"): 1,
        ("a", "x", "n"): 1,
        ("a", "y", "m"): 2,
        ("b", "y", "m"): 1,
        ("b", "x", "m"): 2,
    }


def test_block_mean_se_means_names_and_orders():
    g = pd.DataFrame(
        {
            "arch": ["r", "r", "r", "m", "m"],
            "norm": ["none", "none", "batch", "batch", "odd"],
            "block": [1, 1, 1, 1, 1],
            "metric": ["k"] * 5,
            "value": [1.0, 3.0, 2.0, 5.0, 7.0],
        }
    )
    s, rows = block_mean_se(
        g, ["arch", "norm"], label=("norm", {"batch": "BN", "none": "no norm"}), row=("arch", {"r": "ResNet"})
    )
    assert list(s["label"]) == ["BN", "odd", "BN", "no norm"]  # grouped by arch first: m's labels first
    assert list(s["row"]) == ["m", "m", "ResNet", "ResNet"]
    assert rows == ["m", "ResNet"]
    two = s[(s["arch"] == "r") & (s["norm"] == "none")].iloc[0]
    assert two["mean"] == 2.0 and np.isclose(two["se"], np.std([1.0, 3.0], ddof=1) / np.sqrt(2))
    assert s[s["norm"] == "odd"]["se"].isna().all()  # one run: no standard error
    s2, _ = block_mean_se(g, ["norm", "arch"], label=("norm", {}), row=("arch", {}))
    assert list(s2["label"]) == ["batch", "batch", "none", "odd"]
