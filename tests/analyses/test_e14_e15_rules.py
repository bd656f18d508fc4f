"""E14's and E15's rules on synthetic runs: each can give every verdict, and a profile too shallow to put the
claim at risk gives "inconclusive", never "reproduced"."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pytest

from bnlab.analyses import analysis
from bnlab.analyses.e14_rank_collapse import write_fake as write_e14
from bnlab.analyses.e15_signal_propagation import write_fake as write_e15
from bnlab.analyses.spec import find_specs
from bnlab.report.study import collect_section
from bnlab.store.runset import RunSet


def verdict(sid, root, tmp_path):
    spec = find_specs([sid])[0]
    (tmp_path / "fig").mkdir(exist_ok=True)
    return collect_section(spec, RunSet.open(root), root, "cpu", tmp_path / "fig", {}).verdict


@pytest.mark.parametrize(
    "kw,want,why",
    [
        ({}, "reproduced", ""),
        ({"ends": {"batch": 4.0, "none": 1.8}}, "partly", "consistent with <= 2"),  # no norm stops at 1.8
        ({"ends": {"batch": 1.05, "none": 3.0}}, "not", ""),  # BN collapses, no norm does not
        ({"depth": 8}, "inconclusive", "deep enough"),  # too shallow to collapse: never at risk
        ({"ends": {"batch": 2.5, "none": 1.05}, "noise": 1.5}, "inconclusive", "too noisy"),
    ],
)
def test_e14_rule_gives_every_verdict(kw, want, why, tmp_path):
    write_e14(tmp_path / "runs", "cpu", **kw)
    v = verdict("E14", tmp_path / "runs", tmp_path)
    assert v.verdict == want, v.reason
    assert why in v.reason


@pytest.mark.parametrize(
    "kw,want,why",
    [
        ({}, "reproduced", ""),
        ({"bn": "exp"}, "partly", ""),  # BN's stream grows exponentially: only the BN parts fail
        ({"bn": "exp", "nonorm": "linear", "skipinit": "exp"}, "not", ""),
        ({"blocks": 3}, "inconclusive", "6 blocks per stage"),  # ResNet-20: too few blocks to tell
    ],
)
def test_e15_rule_gives_every_verdict(kw, want, why, tmp_path):
    write_e15(tmp_path / "runs", "cpu", **kw)
    v = verdict("E15", tmp_path / "runs", tmp_path)
    assert v.verdict == want, v.reason
    assert why in v.reason


def test_e15_statistics_on_known_streams(tmp_path):
    """Linear growth: increment ratio 1 and branch exponent -1; 1.8x per block: log2 1.8 doublings per block."""
    write_e15(tmp_path / "runs", "cpu")
    spec = find_specs(["E15"])[0]
    q = analysis(spec).quantities(RunSet.open(tmp_path / "runs").experiment("E15", "cpu"), spec)
    assert abs(q["bn_pre_log2_increment_ratio"]) < 0.2
    assert abs(q["bn_pre_branch_ratio_exponent"] + 1) < 0.05
    assert abs(q["nonorm_pre_log2_growth"] - 0.848) < 0.02  # log2(1.8)
    assert q["skipinit_pre_log2_growth"] == pytest.approx(0, abs=0.01)
    assert q["blocks_per_stage"] == 9
