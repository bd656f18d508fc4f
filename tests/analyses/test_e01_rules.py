"""E1's rules on synthetic runs: the design check, the divergence rule, the equivalence test at the shared lr
and the large-vs-shared test each decide every verdict — the claim can fail, and a design or runs that
cannot test it give "inconclusive", never "reproduced"."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pytest

from bnlab.analyses import analysis
from bnlab.analyses.e01_lr_study import write_fake
from bnlab.analyses.spec import find_specs
from bnlab.report.study import collect_section
from bnlab.store.runset import RunSet

SPEC = find_specs(["E1"])[0]
RISING = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9]  # +10 points before the first drop, < 95 %


def make(root, **kw):
    """E1's own synthetic runs (bnlab.analyses.e01_lr_study.write_fake) without the small-lr arms."""
    write_fake(root, "cpu", small=False, **kw)
    return root


def verdict(root, tmp_path):
    (tmp_path / "fig").mkdir(exist_ok=True)
    sec = collect_section(SPEC, RunSet.open(root), root, "cpu", tmp_path / "fig", {})
    return sec.verdict


@pytest.mark.parametrize(
    "kw,want,why",
    [
        ({}, "reproduced", ""),
        ({"nobn_shared": 0.60}, "partly", "outside"),  # BN 10 points better at the same lr: equivalence fails
        ({"nobn_shared": 0.60, "bn_large": 0.70, "nobn_large": "complete"}, "not", ""),  # every part fails
        # no BN trains at the large lr (50 % test accuracy): rule (i) fails, the others hold
        ({"nobn_large": "complete"}, "partly", ""),
        # no BN at the large lr ends at chance without blowing up: it cannot train there either
        ({"nobn_large": "complete", "nobn_large_acc": 0.1}, "reproduced", ""),
        ({"nobn_max": 0.05}, "inconclusive", "design"),  # gap 18x < 30: the claim was never at risk
        ({"nobn_max": None}, "inconclusive", "design"),  # thresholds not measured
        ({"curve": RISING}, "inconclusive", "plateau"),  # the accuracies were still moving
        # paired differences 7 and 3 points: 5 ± 2·2.05 overlaps the ±3 margin
        ({"nobn_shared": 0.65, "seeds": 2, "spread": 0.02}, "inconclusive", "overlaps"),
    ],
)
def test_e1_rule_can_give_every_verdict_on_synthetic_runs(kw, want, why, tmp_path):
    v = verdict(make(tmp_path / "runs", **kw), tmp_path)
    assert v.verdict == want, v.reason
    assert why in v.reason


def test_e1_uncertainty_counts_seed_spread_and_binomial_error(tmp_path):
    root = make(tmp_path / "runs")
    q = analysis(SPEC).quantities(RunSet.open(root).experiment("E1", "cpu"), SPEC)
    # paired differences 0.0 at every seed: the SE is the binomial part only, sqrt(sum 2 p(1-p)/N) / n
    import math

    binom = sum(2 * 1e4 * a * (1 - a) / 10_000 for a in (0.70, 0.703, 0.706)) / 9
    assert q["bn_minus_nobn_shared_lr"] == pytest.approx(0.0, abs=1e-9)
    assert q["bn_minus_nobn_shared_lr_se"] == pytest.approx(math.sqrt(binom), rel=1e-9)
    assert q["shared_lr_pairs"] == 3 and q["design_at_risk"] == 1.0


@pytest.mark.parametrize(
    "state,acc,diverged,chance",
    [
        ("diverged", 0.5, 1.0, 0.0),
        ("complete", 0.1, 0.0, 1.0),
        ("complete", 0.105, 0.0, 1.0),
        ("complete", 0.107, 0.0, 0.0),
    ],
)
def test_e1_large_lr_failure_counts_divergence_and_chance(state, acc, diverged, chance, tmp_path):
    # chance on 10,000 test images: 10 % + 2 sqrt(0.1 * 0.9 / 10,000) = 10.6 %; above it the run learned something
    root = make(tmp_path / "runs", nobn_large=state, nobn_large_acc=acc)
    q = analysis(SPEC).quantities(RunSet.open(root).experiment("E1", "cpu"), SPEC)
    assert q["nobn_large_lr_diverged_share"] == diverged
    assert q["nobn_large_lr_chance_share"] == chance
    assert q["nobn_large_lr_failed_share"] == diverged + chance
