"""The verdict rule engine against hand cases, and every spec's paper block against its analysis."""

import math

import pytest

from bnlab.analyses import analysis
from bnlab.analyses.spec import all_specs, rule_keys
from bnlab.errors import UserError
from bnlab.report.rules import RULES, VERDICTS, evaluate


def v(rule, **values):
    return evaluate(rule, values).verdict


def test_value_at_least_grades():
    rule = {"kind": "value_at_least", "ours": "q", "threshold": 10, "partly": 2}
    assert v(rule, q=10.0) == "reproduced"
    assert v(rule, q=9.99) == "partly"
    assert v(rule, q=2.0) == "partly"
    assert v(rule, q=1.99) == "not"
    assert v({"kind": "value_at_least", "ours": "q", "threshold": 10}, q=5.0) == "not"


def test_value_at_most_and_abs():
    rule = {"kind": "value_at_most", "ours": "q", "threshold": 1, "partly": 1.5}
    assert [v(rule, q=x) for x in (0.5, 1.2, 3.0)] == ["reproduced", "partly", "not"]
    rule = {"kind": "abs_at_most", "ours": "q", "threshold": 2, "partly": 5}
    assert [v(rule, q=x) for x in (-1.9, -4.0, 6.0)] == ["reproduced", "partly", "not"]


def test_missing_and_nonfinite_are_inconclusive_and_named():
    rule = {"kind": "value_at_least", "ours": "layer-55 ratio", "threshold": 10}
    out = evaluate(rule, {})
    assert out.verdict == "inconclusive" and "layer-55 ratio" in out.reason and "not measured" in out.reason
    for bad in (math.nan, math.inf, None, "x"):
        assert v(rule, **{"layer-55 ratio": bad}) == "inconclusive"


def test_ratio_at_least_from_parts_and_named_ratio():
    rule = {"kind": "ratio_at_least", "numerator": "a", "denominator": "b", "threshold": 10, "partly": 3}
    assert v(rule, a=100.0, b=1.0) == "reproduced"
    assert v(rule, a=5.0, b=1.0) == "partly"
    assert v(rule, a=1.0, b=1.0) == "not"
    assert v(rule, a=1.0, b=0.0) == "inconclusive"
    assert v(rule, a=-1.0, b=1.0) == "inconclusive"  # not a positive ratio
    # the brief's own example: a named ratio quantity
    assert (
        v(
            {"kind": "ratio_at_least", "ours": "no-BN/BN layer-55 grad std", "threshold": 10},
            **{"no-BN/BN layer-55 grad std": 120.0},
        )
        == "reproduced"
    )


def test_value_within_bands():
    rule = {
        "kind": "value_within",
        "ours": "q",
        "low": 0.5,
        "high": 0.85,
        "partly_low": 0.25,
        "partly_high": 1.2,
    }
    assert [v(rule, q=x) for x in (0.67, 0.3, 1.0, 0.1, 1.5)] == [
        "reproduced",
        "partly",
        "partly",
        "not",
        "not",
    ]


def test_all_of_and_any_of_combine():
    yes = {"kind": "value_at_least", "ours": "a", "threshold": 1}
    no = {"kind": "value_at_least", "ours": "b", "threshold": 1}
    gone = {"kind": "value_at_least", "ours": "missing", "threshold": 1}
    vals = {"a": 2.0, "b": 0.0}
    assert evaluate({"kind": "all_of", "rules": [yes, yes]}, vals).verdict == "reproduced"
    assert evaluate({"kind": "all_of", "rules": [yes, no]}, vals).verdict == "partly"
    assert evaluate({"kind": "all_of", "rules": [no, no]}, vals).verdict == "not"
    out = evaluate({"kind": "all_of", "rules": [yes, gone]}, vals)
    assert out.verdict == "inconclusive" and len(out.parts) == 2 and "missing" in out.reason
    assert evaluate({"kind": "any_of", "rules": [no, yes]}, vals).verdict == "reproduced"
    assert evaluate({"kind": "any_of", "rules": [gone, no]}, vals).verdict == "not"
    assert evaluate({"kind": "none", "reason": "a question"}, {}).verdict == "inconclusive"


def test_malformed_rules_raise_user_errors():
    with pytest.raises(UserError, match="choose one of"):
        evaluate({"kind": "bigger_is_better", "ours": "a"}, {})
    with pytest.raises(UserError, match="threshold"):
        evaluate({"kind": "value_at_least", "ours": "a"}, {"a": 1.0})
    with pytest.raises(UserError, match="kind"):
        evaluate({"ours": "a"}, {})
    with pytest.raises(UserError, match="rules"):
        evaluate({"kind": "all_of", "rules": []}, {})


def test_every_spec_has_a_paper_block_with_provenance_and_a_rule_that_evaluates():
    for spec in all_specs():
        paper = spec.paper
        assert paper.figure and paper.claim_source and paper.formula, spec.id
        assert paper.values and paper.rule is not None, spec.id
        for row in paper.values:
            assert row.source, f"{spec.id}: {row.key} has no provenance"
        # every rule evaluates on empty data (inconclusive, never an exception) and names real kinds
        assert evaluate(paper.rule, {}).verdict == "inconclusive"
        assert set(rule_keys(paper.rule)) <= {v.key for v in paper.values}
        assert analysis(spec).FIGURES, spec.id
        for need in paper.needs:
            assert need in {s.id for s in all_specs()}, f"{spec.id} needs unknown {need}"
    assert set(VERDICTS) == {"reproduced", "partly", "not", "inconclusive"}
    assert {"value_at_least", "ratio_at_least", "all_of", "none"} <= set(RULES.names())


def test_at_least_se_gives_every_verdict():
    rule = {"kind": "at_least_se", "ours": "d", "se": "s", "threshold": 3, "partly": 0, "k": 2}
    assert v(rule, d=10.0, s=1.0) == "reproduced"  # [8, 12] >= 3
    assert v(rule, d=4.0, s=1.0) == "partly"  # [2, 6]: above 0, not all above 3
    assert v(rule, d=0.5, s=1.0) == "not"  # [-1.5, 2.5] entirely below 3
    assert v(rule, d=1.5, s=1.0) == "inconclusive"  # [-0.5, 3.5] straddles 3 and 0
    assert v(rule, d=2.0) == "inconclusive"  # no standard error: never decided
    assert v(rule, d=2.0, s=-1.0) == "inconclusive"


def test_at_most_se_counts_the_estimates_own_uncertainty():
    rule = {"kind": "at_most_se", "ours": "r", "se": "s", "threshold": 1.0, "partly": 1.5, "k": 2}
    assert v(rule, r=1.10, s=0.13) == "reproduced"  # 1.10 - 0.26 <= 1: consistent with the bound
    assert v(rule, r=1.60, s=0.10) == "partly"  # 1.40: above 1, within 1.5
    assert v(rule, r=3.0, s=0.10) == "not"
    assert v(rule, r=float("nan"), s=0.1) == "inconclusive"


def test_equivalence_gives_every_verdict():
    rule = {"kind": "equivalence", "ours": "d", "se": "s", "margin": 3, "partly_margin": 5, "k": 2}
    assert v(rule, d=0.5, s=1.0) == "reproduced"  # [-1.5, 2.5] inside ±3
    assert v(rule, d=2.0, s=1.0) == "partly"  # [0, 4] inside ±5, not ±3
    assert v(rule, d=-8.0, s=1.0) == "not"  # [-10, -6] outside ±3
    assert v(rule, d=4.0, s=1.5) == "inconclusive"  # [1, 7] overlaps the margin
    assert v(rule, d=0.0) == "inconclusive"


def test_requires_is_inconclusive_unless_its_condition_holds():
    inner = {"kind": "value_at_least", "ours": "q", "threshold": 1, "partly": 0.5}
    rule = {
        "kind": "requires",
        "because": "the plateau",
        "condition": {"kind": "value_at_least", "ours": "ok", "threshold": 1},
        "rule": inner,
    }
    assert v(rule, ok=1.0, q=2.0) == "reproduced"
    assert v(rule, ok=1.0, q=0.7) == "partly"
    assert v(rule, ok=1.0, q=0.1) == "not"
    out = evaluate(rule, {"ok": 0.5, "q": 2.0})
    assert out.verdict == "inconclusive" and "the plateau does not hold" in out.reason
    assert v(rule, q=2.0) == "inconclusive"  # the condition's quantity is missing
