"""docs/experiments.md is generated from the specs and paper_values.yaml: the committed file must match."""

from pathlib import Path

from bnlab.analyses.spec import all_specs
from bnlab.report.docs import FORMULA, experiments_markdown

DOC = Path(__file__).parents[2] / "docs" / "experiments.md"


def test_docs_experiments_md_is_up_to_date():
    assert DOC.read_text(encoding="utf-8") == experiments_markdown(), (
        "docs/experiments.md is stale: run `python -m bnlab.report.docs > docs/experiments.md`"
    )


def test_every_spec_has_a_formula_and_a_section():
    text = experiments_markdown()
    for s in all_specs():
        assert s.id in FORMULA
        assert f"## {s.id}\n" in text and f"--only {s.id}" in text
