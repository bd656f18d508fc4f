"""Every experiment's analysis on its own synthetic runs (fake_runs): the verdict its rule must give,
exactly the quantity keys its spec declares, and every figure drawn."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pytest

from bnlab.analyses import analysis, module_name
from bnlab.analyses.spec import all_specs, find_specs
from bnlab.report.study import collect_section
from bnlab.store.runset import RunSet

SPECS = {s.id: s for s in all_specs()}


def section(spec, tmp_path, profile=None):
    profile = profile or spec.paper.comparable_profiles[0]
    root = tmp_path / "runs"
    for need in spec.paper.needs:
        analysis(SPECS[need]).fake_runs(root, profile)
    expected = analysis(spec).fake_runs(root, profile)
    sec = collect_section(spec, RunSet.open(root), root, profile, tmp_path / "fig", {})
    return sec, expected


@pytest.mark.parametrize("sid", list(SPECS))
def test_fake_runs_give_the_expected_verdict_and_declared_quantities(sid, tmp_path):
    spec = SPECS[sid]
    (tmp_path / "fig").mkdir()
    sec, expected = section(spec, tmp_path)
    assert sec.verdict.verdict == expected, sec.verdict.reason
    declared = [v.key for v in spec.paper.values]
    assert not [n for n in sec.notes if "undeclared" in n or "did not return" in n], sec.notes
    measured = {r.key: r.ours for r in sec.rows}
    assert list(measured) == declared
    for fo in sec.figures:
        assert fo.error is None, f"{fo.name}: {fo.error}"
        assert fo.png is not None and fo.png.stat().st_size > 1000
    assert [f.name for f in sec.figures] == list(analysis(spec).FIGURES)


@pytest.mark.parametrize("sid", list(SPECS))
def test_analysis_module_is_named_like_its_spec(sid):
    spec = SPECS[sid]
    assert spec.path is not None and module_name(spec) == spec.path.stem.lower()
    mod = analysis(spec)
    assert mod.__doc__ and callable(mod.quantities) and callable(mod.fake_runs) and mod.FIGURES
    assert find_specs([sid]) == [spec]
