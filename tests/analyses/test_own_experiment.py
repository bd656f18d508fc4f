"""A user's own experiment: a spec with a paper block and an analysis module written into a folder outside
the package (nothing else edited); `bnlab sweep` runs it, `bnlab report --experiments DIR` gives its verdict.
Also: a misspelt key in a rule, or a quantity the analysis does not return, never passes silently."""

from __future__ import annotations

import re

import pytest

from bnlab.analyses.spec import load_spec
from bnlab.cli.main import main
from bnlab.errors import UserError

SPEC = """\
id: E99
name: top_class
claim: "At init an unnormalized ResNet predicts one class for most inputs; BN's predictions are spread."
base:
  model: {name: resnet_cifar, depth: 8, init: {conv: xavier}}
  data: {name: synthetic, synthetic_train: 256, synthetic_test: 64, val_size: 0}
  optim: {batch_size: 32}
  train: {steps: 0, evaluate: false, threads: 1}
  probes:
    - {name: output_bias, at: [0], batches: 1}
grid:
  model.norm: [batch, none]
profiles:
  cpu: {cost_s: 5, tests: "the claim, on synthetic images"}
paper:
  claim_source: "text"
  figure: "Fig. 6: dL/dz at init; without BN one class dominates."
  formula: "top-class share = largest fraction of images predicted as one class"
  values:
    - {key: share_nobn, label: "top-class share, no BN", paper: "~1", source: "Fig. 6, approximate"}
    - {key: share_bn, label: "top-class share, BN", paper: null}
  rule: {kind: value_at_least, ours: share_nobn, threshold: %s, partly: 0.1}
"""

ANALYSIS = '''\
"""E99: the share of images predicted as the most common class, BN vs no BN."""
from bnlab.analyses.fake import FakeRoot, probe
from bnlab.analyses.select import mean
from bnlab.figures.basic import message_figure


def quantities(runs, spec):
    t = runs.probe("output_bias")
    t = t[t["metric"] == "top_class_share"]
    norm = t["run_id"].map(runs.runs.set_index("run_id")["model.norm"])
    return {"share_nobn": mean(t[norm == "none"]["value"]), "share_bn": mean(t[norm == "batch"]["value"])}


def shares(runs, spec):
    """E99: top-class share per run."""
    t = runs.probe("output_bias")
    return message_figure(str(t[t["metric"] == "top_class_share"][["label", "value"]]))


FIGURES = {"shares": shares}


def fake_runs(root, profile):
    r = FakeRoot(root, profile)
    for norm, v in (("batch", 0.2), ("none", 0.9)):
        probe(r.run("E99", {"model.norm": norm}), "output_bias", [{"metric": "top_class_share", "value": v}])
    return "reproduced"
'''


def write(folder, threshold="0.0"):
    folder.mkdir(exist_ok=True)
    (folder / "E99_top_class.yaml").write_text(SPEC % threshold)
    (folder / "e99_top_class.py").write_text(ANALYSIS)


def test_own_experiment_from_a_folder_runs_and_reports_its_verdict(tmp_path, monkeypatch, capsys):
    exp = tmp_path / "my_experiments"
    write(exp)
    runs = tmp_path / "runs"
    monkeypatch.setenv("BNLAB_EXPERIMENTS", str(exp))  # the environment variable ...
    assert main(["sweep", "E99", "--profile", "cpu", "--runs", str(runs)]) == 0
    monkeypatch.setenv("BNLAB_EXPERIMENTS", "")  # ... or the flag (it extends the variable; restored after)
    capsys.readouterr()
    rc = main(["report", str(runs), "--experiments", str(exp), "--only", "E99", "--profile", "cpu"])
    assert rc == 0
    html = (runs / "report" / "report.html").read_text(encoding="utf-8")
    row = re.search(r"data-experiment='E99'>.*?class=\"verdict v-(\w+)\"", html)
    assert row and row.group(1) == "reproduced"  # threshold 0: any measured share reproduces
    assert "top-class share, no BN" in html
    md = (runs / "report" / "report.md").read_text(encoding="utf-8")
    assert "E99" in md


def test_the_same_rule_can_say_not_on_real_runs(tmp_path, monkeypatch):
    exp = tmp_path / "strict"
    write(exp, threshold="1.01")  # a share cannot exceed 1: the rule must say "not" (or "partly")
    monkeypatch.setenv("BNLAB_EXPERIMENTS", str(exp))
    from bnlab.analyses import analysis
    from bnlab.analyses.spec import find_specs
    from bnlab.report.study import collect_section
    from bnlab.store.runset import RunSet

    spec = find_specs(["E99"])[0]
    root = tmp_path / "runs"
    analysis(spec).fake_runs(root, "cpu")
    (tmp_path / "fig").mkdir()
    sec = collect_section(spec, RunSet.open(root), root, "cpu", tmp_path / "fig", {})
    assert sec.verdict.verdict == "partly" and "0.9" in sec.verdict.reason


def test_a_misspelt_key_in_a_rule_is_an_error_at_load(tmp_path):
    p = tmp_path / "E99_top_class.yaml"
    p.write_text((SPEC % "0.5").replace("ours: share_nobn", "ours: share_nbn"))
    with pytest.raises(UserError, match="share_nbn"):
        load_spec(p)


def test_a_declared_quantity_the_analysis_does_not_return_is_named(tmp_path, monkeypatch):
    exp = tmp_path / "missing"
    write(exp)
    (exp / "e99_top_class.py").write_text(
        ANALYSIS.replace(', "share_bn": mean(t[norm == "batch"]["value"])', "")
    )
    monkeypatch.setenv("BNLAB_EXPERIMENTS", str(exp))
    from bnlab.analyses import _load, analysis
    from bnlab.analyses.spec import find_specs
    from bnlab.report.study import measure
    from bnlab.store.runset import RunSet

    _load.cache_clear()
    spec = find_specs(["E99"])[0]
    analysis(spec).fake_runs(tmp_path / "runs", "cpu")
    q, notes = measure(spec, RunSet.open(tmp_path / "runs").experiment("E99", "cpu"))
    assert "share_bn" not in q
    assert any("did not return: share_bn" in n for n in notes)
    _load.cache_clear()


def test_an_unknown_experiments_folder_is_one_sentence(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("BNLAB_EXPERIMENTS", "")  # --experiments adds to it; restored after the test
    rc = main(["report", str(tmp_path), "--experiments", str(tmp_path / "nope")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "Traceback" not in err


def test_spec_keys_must_be_identifiers_and_unique(tmp_path):
    p = tmp_path / "E99_top_class.yaml"
    p.write_text((SPEC % "0.5").replace("key: share_bn,", "key: share bn,"))
    with pytest.raises(UserError, match="identifier"):
        load_spec(p)
    p.write_text((SPEC % "0.5").replace("key: share_bn,", "key: share_nobn,"))
    with pytest.raises(UserError, match="twice"):
        load_spec(p)
