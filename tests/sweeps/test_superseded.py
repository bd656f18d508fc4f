"""A spec whose grid changes between two `reproduce` calls into one root: the runs the new plan no longer has
leave the experiment (meta.json `superseded`) instead of being mixed into its report, stay on disk, and come
back, without rerunning, when the plan asks for them again."""

from __future__ import annotations

import json

import yaml

from bnlab.analyses.spec import load_spec
from bnlab.store.runset import RunSet
from bnlab.sweeps.runner import run_specs


def _with_lrs(path, lrs):
    spec = yaml.safe_load(path.read_text())
    spec["grid"]["optim.lr"] = lrs
    path.write_text(yaml.safe_dump(spec))
    return load_spec(path)


def _lrs(root):
    runs = RunSet.open(root)
    now = sorted(runs.experiment("T1", "smoke").runs["optim.lr"].unique())
    old = sorted(runs.superseded("T1/smoke")["optim.lr"].unique())
    return now, old


def test_a_changed_grid_retires_the_old_runs_and_a_reverted_one_brings_them_back(tmp_path, tiny_spec):
    root = tmp_path / "runs"
    run_specs([_with_lrs(tiny_spec, [0.05, 0.01])], "smoke", root, measure=False)
    assert _lrs(root) == ([0.01, 0.05], [])

    res = run_specs([_with_lrs(tiny_spec, [0.05, 0.02])], "smoke", root, measure=False)
    assert len(res.ran) == 2 and len(res.skipped) == 2  # only the new lr runs
    assert _lrs(root) == ([0.02, 0.05], [0.01])
    retired = [json.loads(p.read_text()) for p in root.glob("*/meta.json")]
    assert sum(m == {"experiments": [], "superseded": ["T1/smoke"]} for m in retired) == 2
    assert len(list(root.glob("*/summary.json"))) == 6  # nothing deleted

    res = run_specs([_with_lrs(tiny_spec, [0.05, 0.01])], "smoke", root, measure=False)
    assert not res.ran and len(res.skipped) == 4  # the old runs are finished: taken back, not rerun
    assert _lrs(root) == ([0.01, 0.05], [0.02])


def test_other_experiments_tags_are_left_alone(tmp_path, tiny_spec):
    root = tmp_path / "runs"
    run_specs([_with_lrs(tiny_spec, [0.05])], "smoke", root, measure=False)
    for p in root.glob("*/meta.json"):  # the same runs also belong to another experiment and profile
        p.write_text(json.dumps({"experiments": ["T1/smoke", "T9/smoke", "T1/cpu"]}))
    run_specs([_with_lrs(tiny_spec, [0.02])], "smoke", root, measure=False)
    metas = [json.loads(p.read_text()) for p in root.glob("*/meta.json")]
    assert {"experiments": ["T9/smoke", "T1/cpu"], "superseded": ["T1/smoke"]} in metas
