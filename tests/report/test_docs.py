"""docs/experiments.md is generated from the specs' paper blocks and the analyses' FIGURES: the committed
file must match, and each section says what its spec and analysis say (nothing kept in a second place)."""

import importlib
import re
from pathlib import Path

import pytest

from bnlab.analyses import analysis
from bnlab.analyses.spec import all_specs
from bnlab.errors import UserError
from bnlab.probes import PROBE_KIND
from bnlab.report import docs
from bnlab.report.docs import experiments_markdown, probes, rule_text, tasks

DOC = Path(__file__).parents[2] / "docs" / "experiments.md"
SPECS = list(all_specs())


def sections(text: str) -> dict[str, str]:
    parts = re.split(r"^## (\S+)\n", text, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2]))


def test_docs_experiments_md_is_up_to_date():
    assert DOC.read_text(encoding="utf-8") == experiments_markdown(), (
        "docs/experiments.md is stale: run `python -m bnlab.report.docs > docs/experiments.md`"
    )


def test_nothing_is_kept_beside_the_specs():
    for name in ("FORMULA", "TRAIN_LIKE", "MAX_LR"):
        assert not hasattr(docs, name), f"docs.{name}: that belongs in the specs"


@pytest.mark.parametrize("spec", SPECS, ids=[s.id for s in SPECS])
def test_each_section_says_what_its_spec_and_analysis_say(spec):
    sec = sections(experiments_markdown())[spec.id]
    assert f"--only {spec.id}" in sec
    assert spec.paper.formula in sec and spec.paper.figure in sec
    assert f"Verdict rule: {rule_text(spec.paper.rule)};" in sec
    for v in spec.paper.values:
        assert f"| `{v.key}` |" in sec
    for need in spec.paper.needs:
        assert f"[{need}](#{need.lower()})" in sec
    try:
        names = list(analysis(spec).FIGURES)
    except UserError:  # an experiment not moved to its analysis module yet
        names = []
    for name in names:
        assert f"  - `{name}` — " in sec
    for p in probes(spec):
        assert f"`from bnlab.probes import {p}; {p}(model, " in sec
        assert p in PROBE_KIND
    assert ("bisection" in sec) == ("max_lr" in tasks(spec))
    assert ("bnlab train" in sec) == ("train" in tasks(spec) and not probes(spec))
    assert "from bnlab.sweeps.reproduce import reproduce" in sec


def test_the_documented_imports_exist():
    assert callable(importlib.import_module("bnlab.sweeps.reproduce").reproduce)
    probes_pkg = importlib.import_module("bnlab.probes")
    for p in {p for s in SPECS for p in probes(s)}:
        assert callable(getattr(probes_pkg, p))


def test_rules_in_words_name_their_keys():
    rule = {
        "kind": "all_of",
        "rules": [
            {"kind": "abs_at_most", "ours": "gap", "threshold": 2.0, "partly": 5.0},
            {
                "kind": "value_within",
                "ours": "r",
                "low": 0.8,
                "high": 1.25,
                "partly_low": 0.5,
                "partly_high": 2,
            },
            {"kind": "ratio_at_least", "numerator": "a", "denominator": "b", "threshold": 10},
        ],
    }
    assert rule_text(rule) == (
        "all of: |`gap`| ≤ 2.0 (partly ≤ 5.0); 0.8 ≤ `r` ≤ 1.25 (partly 0.5 … 2); `a` / `b` ≥ 10"
    )
    assert rule_text(None) == "none"
    assert rule_text({"kind": "mystery", "x": 1}) == '`{"kind": "mystery", "x": 1}`'
