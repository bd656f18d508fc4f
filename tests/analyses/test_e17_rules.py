"""E17's rule on synthetic runs gives every verdict: BN at the mean-field rate (reproduced), off it (partly),
no explosion at all (not), one seed (no standard error: inconclusive); and the mean-field gain's limits."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import pytest

from bnlab.analyses import analysis
from bnlab.analyses.e17_bn_gradient_explosion import mean_field_gain, mean_field_rate, write_fake
from bnlab.analyses.spec import find_specs
from bnlab.report.study import collect_section
from bnlab.store.runset import RunSet

SPEC = find_specs(["E17"])[0]


@pytest.mark.parametrize(
    "kw,want",
    [
        ({}, "reproduced"),
        ({"offset": 0.03}, "partly"),  # explodes, but 0.03 per layer off the mean-field rate
        ({"offset": -1.0, "nobn_rate": 0.2}, "not"),  # BN flat (rate < 0), no BN explodes
        ({"seeds": 1}, "inconclusive"),  # no standard error
    ],
)
def test_e17_rule_gives_every_verdict(kw, want, tmp_path):
    root = tmp_path / "runs"
    write_fake(root, "cpu", **kw)
    (tmp_path / "fig").mkdir()
    sec = collect_section(SPEC, RunSet.open(root), root, "cpu", tmp_path / "fig", {})
    assert sec.verdict.verdict == want, sec.verdict.reason


def test_e17_quantities_recover_the_synthetic_rates(tmp_path):
    write_fake(tmp_path, "cpu", offset=0.01, nobn_rate=0.003, seeds=3, spread=0.002)
    q = analysis(SPEC).quantities(RunSet.open(tmp_path).experiment("E17", "cpu"), SPEC)
    assert q["rate_bn"] == pytest.approx(mean_field_rate(256) + 0.01, abs=1e-9)
    assert q["rate_bn_minus_predicted"] == pytest.approx(0.01, abs=1e-9)
    assert q["rate_bn_small_batch_minus_predicted"] == pytest.approx(0.01, abs=1e-9)
    assert q["rate_bn_se"] == pytest.approx(0.002 / math.sqrt(3), rel=1e-6)  # seeds at -0.002, 0, +0.002
    assert q["rate_nobn"] == pytest.approx(0.003, abs=1e-9)


def test_mean_field_gain_limits():
    # B -> inf: 1 / (2 Var ReLU(z)) = pi / (pi - 1); small B explodes faster; B <= 3 undefined
    assert mean_field_gain(4096, samples=4000) == pytest.approx(math.pi / (math.pi - 1), rel=3e-3)
    assert mean_field_gain(8) > mean_field_gain(32) > mean_field_gain(256) > math.pi / (math.pi - 1)
    assert math.isnan(mean_field_gain(3))
