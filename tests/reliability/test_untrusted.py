"""Untrusted input: YAML with python tags, run directories from elsewhere, property-based bad input."""

import io
import os
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bnlab.cli.main import main
from bnlab.config import resolve
from bnlab.errors import UserError
from bnlab.store import load_probes, load_runs


def test_yaml_config_with_python_tags_is_refused(tmp_path):
    marker = tmp_path / "PWNED"
    cfg = tmp_path / "evil.yaml"
    cfg.write_text(f"model: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(UserError):
        resolve(cfg)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bnlab.cli.main",
            "train",
            "--config",
            str(cfg),
            "--runs",
            str(tmp_path / "runs"),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert not marker.exists()


def test_foreign_run_directory_is_read_without_executing(tmp_path):
    marker = tmp_path / "PWNED"
    d = tmp_path / "runs" / "abc123"
    (d / "probes").mkdir(parents=True)
    (d / "config.yaml").write_text(f"model: !!python/object/apply:os.system ['touch {marker}']\n")
    (d / "status.json").write_text('{"state": "complete"}')
    ok = tmp_path / "runs" / "def456"
    (ok / "probes").mkdir(parents=True)
    (ok / "config.yaml").write_text("model: {depth: 8}\n")
    (ok / "probes" / "p.jsonl").write_text(
        '{"probe": "p", "layer": "a", "metric": "m", "value": 1.0, "step": 0}\n'
    )
    # an npz holding a pickled object array: numpy refuses it with allow_pickle=False
    np.savez(ok / "probes" / "p.npz", obj=np.array([{"x": 1}], dtype=object))
    df = load_runs(tmp_path / "runs")
    assert list(df["run_id"]) == ["def456"]  # the unreadable one is skipped, nothing executed
    assert len(load_probes(tmp_path / "runs", "p")) == 1
    with pytest.raises(ValueError):
        with np.load(ok / "probes" / "p.npz", allow_pickle=False) as z:
            z["obj"]
    assert not marker.exists()


def _cli(argv):
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as e:  # argparse
            code = e.code
    return code, out.getvalue(), err.getvalue()


KEYS = st.sampled_from(
    [
        "model.depth",
        "model.norm",
        "model.width",
        "model.placement",
        "model.init.conv",
        "model.init.fc",
        "optim.lr",
        "optim.momentum",
        "optim.batch_size",
        "optim.milestones",
        "optim.warmup.steps",
        "optim.warmup.kind",
        "train.epochs",
        "train.steps",
        "train.divergence.threshold",
        "train.divergence.mode",
        "data.name",
        "data.subset",
        "data.val_size",
        "probes",
        "model",
        "nonsense",
        "model.nonsense",
        "train.seed",
    ]
)
VALUES = st.one_of(
    st.integers(-(10**6), 10**6).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(
        [
            "batch",
            "none",
            "group",
            "xavier",
            "[1, 2]",
            "{a: 1}",
            "",
            "null",
            "true",
            "[0.5, 0.2]",
            "unicorn",
            "'",
            "[",
            "{",
            "!!python/object/apply:os.system ['true']",
            "1e-3",
            "nan",
            "-inf",
        ]
    ),
    st.text(max_size=12),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pairs=st.lists(st.tuples(KEYS, VALUES), min_size=1, max_size=3))
def test_any_set_value_gives_a_config_or_one_sentence_exit_2(pairs, tmp_path):
    argv = ["train", "--dry-run", "--runs", str(tmp_path / "runs")]
    for k, v in pairs:
        argv += ["--set", f"{k}={v}"]
    code, out, err = _cli(argv)
    assert code in (0, 2), (argv, code, err)
    assert "Traceback" not in err
    if code == 2:
        assert err.strip().count("\n") == 0, err  # one sentence
    else:
        assert "run id" in out
    assert not (tmp_path / "runs").exists()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=200))
def test_any_yaml_file_gives_a_config_or_one_sentence_exit_2(text, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    code, _, err = _cli(["train", "--dry-run", "--config", str(cfg)])
    assert code in (0, 2) and "Traceback" not in err


def test_no_marker_from_property_tests():
    assert not os.path.exists("PWNED")
