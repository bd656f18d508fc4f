"""The report names the runs of an experiment that an earlier plan left in the root (meta.json `superseded`)
and keeps them out of its numbers."""

from __future__ import annotations

import json

import matplotlib

matplotlib.use("Agg")

from bnlab.analyses.e01_lr_study import write_fake
from bnlab.analyses.spec import find_specs
from bnlab.report.study import collect_section
from bnlab.store.runset import RunSet

SPEC = find_specs(["E1"])[0]


def test_superseded_runs_are_named_and_left_out(tmp_path):
    root = tmp_path / "runs"
    write_fake(root, "cpu", small=False)
    whole = RunSet.open(root)
    n = len(whole.experiment("E1", "cpu"))
    one = whole.where(model__norm="none", optim__lr=0.1).iloc[0]
    (root / one["run_id"] / "meta.json").write_text(json.dumps({"experiments": [], "superseded": ["E1/cpu"]}))
    (tmp_path / "fig").mkdir()
    sec = collect_section(SPEC, RunSet.open(root), root, "cpu", tmp_path / "fig", {})
    assert len(sec.runs) == n - 1 and one["run_id"] not in set(sec.runs["run_id"])
    assert any("earlier plan of E1/cpu" in x and one["run_id"] in x for x in sec.notes)
