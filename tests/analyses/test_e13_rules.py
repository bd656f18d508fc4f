"""E13's rule on synthetic runs: β and loss-range ratios (no BN / BN, paired by probe step) decide every
verdict, and a no-BN arm above its measured largest stable lr (or too far below it) gives "inconclusive"."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pytest

from bnlab.analyses.e13_smoothness import write
from bnlab.analyses.spec import find_specs
from bnlab.report.study import collect_section
from bnlab.store.runset import RunSet

SPEC = find_specs(["E13"])[0]


@pytest.mark.parametrize(
    "kw,want",
    [
        ({"beta_nobn": 10.0, "range_nobn": 10.0}, "reproduced"),
        ({"beta_nobn": 1.5, "range_nobn": 10.0}, "partly"),  # β only 1.5x: above 0, not 2x
        ({"beta_nobn": 0.3, "range_nobn": 0.3}, "not"),  # BN's β and loss range are the larger ones
        ({"beta_nobn": 10.0, "range_nobn": 10.0, "nobn_lr": 0.03}, "inconclusive"),  # no BN above its max
        (
            {"beta_nobn": 10.0, "range_nobn": 10.0, "nobn_lr": 0.001},
            "inconclusive",
        ),  # no BN 10x below its max
        # no BN's β wiggles ±90 % over steps: log ratio -0.06 ± 2·0.27 straddles both 0 and 0.3
        ({"beta_nobn": 2.0, "range_nobn": 10.0, "wiggle": 0.9}, "inconclusive"),
    ],
)
def test_e13_rule_gives_every_verdict_on_synthetic_runs(kw, want, tmp_path):
    root = tmp_path / "runs"
    write(root, "cpu", **kw)
    (tmp_path / "fig").mkdir()
    sec = collect_section(SPEC, RunSet.open(root), root, "cpu", tmp_path / "fig", {})
    assert sec.verdict.verdict == want, sec.verdict.reason
