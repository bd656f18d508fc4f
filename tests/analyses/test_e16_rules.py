"""E16's rule on synthetic runs gives every verdict: lambda_max eta/2 hovering at 1 with a non-monotone falling
loss (reproduced), hovering at 0.7 (partly), far below 2/eta with a monotone loss (not), no late probes or
2/eta not above lambda_max at init (inconclusive)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pytest

from bnlab.analyses import analysis
from bnlab.analyses.e16_edge_of_stability import write_fake
from bnlab.analyses.spec import find_specs
from bnlab.report.study import collect_section
from bnlab.store.runset import RunSet

SPEC = find_specs(["E16"])[0]


@pytest.mark.parametrize(
    "kw,want",
    [
        ({}, "reproduced"),
        ({"plateau": 0.7}, "partly"),  # hovers at 0.7 x 2/eta: outside +-0.2, inside +-0.5
        ({"plateau": 0.1, "wiggle": 0.0, "decay": 1e9}, "not"),  # never near 2/eta, loss monotone and flat
        ({"steps": 20}, "inconclusive"),  # one probe in the last half: no median with an SE
        # 2/eta already at lambda_max at init: no progressive sharpening to test, the claim is not at risk
        ({"start": 1.1}, "inconclusive"),
    ],
)
def test_e16_rule_gives_every_verdict(kw, want, tmp_path):
    root = tmp_path / "runs"
    write_fake(root, "cpu", **kw)
    (tmp_path / "fig").mkdir()
    sec = collect_section(SPEC, RunSet.open(root), root, "cpu", tmp_path / "fig", {})
    assert sec.verdict.verdict == want, sec.verdict.reason


def test_e16_quantities_read_the_runs(tmp_path):
    write_fake(tmp_path, "cpu", plateau=1.0, wiggle=0.05)
    q = analysis(SPEC).quantities(RunSet.open(tmp_path).experiment("E16", "cpu"), SPEC)
    assert q["eos_ratio_bn"] == pytest.approx(1.0, abs=0.03)
    assert q["initial_ratio_nobn"] == pytest.approx(0.3, abs=1e-9)  # sin(0) = 0 at the first probe
    assert q["initial_ratio_max"] == pytest.approx(0.3, abs=1e-9)
    assert q["loss_increase_fraction_min"] == pytest.approx(0.5, abs=0.01)  # up every other step
    assert q["final_over_initial_loss_max"] < 0.9
