"""The CLI end to end, in process: listings, a run, status/export, probe, bad input -> exit 2."""

import io
import json
import os
from contextlib import redirect_stderr, redirect_stdout

import pytest

from bnlab.cli.main import main


def cli(*argv):
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = main(list(argv))
        except SystemExit as e:
            code = e.code
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize(
    "what,names",
    [
        ("models", ["resnet_cifar", "vgg_cifar", "mlp"]),
        (
            "norms",
            ["batch", "none", "group", "layer", "instance", "batch_renorm", "ghost_batch", "frozen_batch"],
        ),
        ("inits", ["kaiming_fan_in", "kaiming_fan_out", "xavier", "orthogonal", "delta_orthogonal"]),
        ("datasets", ["cifar10", "cifar100", "synthetic", "arrays"]),
        ("probes", ["kernel_alignment", "layer_stats", "step_size_scan"]),
    ],
)
def test_ls(what, names):
    code, out, _ = cli("ls", what)
    assert code == 0
    listed = {line.split()[0] for line in out.splitlines() if line.strip()}
    assert set(names) <= listed


def test_experiments_lists_every_spec():
    code, out, _ = cli("experiments")
    assert code == 0
    for sid in (
        "E1",
        "E2",
        "E3",
        "E4",
        "E5",
        "E6",
        "E7",
        "E8",
        "E9",
        "E9b",
        "E10",
        "E11a",
        "E11b",
        "E12a",
        "E12e",
    ):
        assert f" {sid} " in out


def test_train_status_export_probe(tmp_path):
    runs = tmp_path / "runs"
    args = [
        "--set",
        "model.depth=8",
        "--set",
        "data.name=synthetic",
        "--set",
        "data.synthetic_train=256",
        "--set",
        "data.val_size=64",
        "--set",
        "optim.batch_size=64",
        "--set",
        "train.epochs=1",
        "--quiet",
    ]
    code, out, _ = cli("train", "--runs", str(runs), *args)
    assert code == 0
    run_dir = out.strip().splitlines()[-1]  # the run directory is the last stdout line
    assert json.loads(open(f"{run_dir}/status.json").read())["state"] == "complete"
    code, out, _ = cli("status", str(runs))
    assert code == 0 and "complete: 1" in out
    code, out, _ = cli("export", str(runs), str(tmp_path / "runs.csv"))
    assert code == 0 and "summary.test_acc" in (tmp_path / "runs.csv").read_text().splitlines()[0]
    code, out, _ = cli(
        "probe",
        "output_bias",
        "--set",
        "model.depth=8",
        "--set",
        "data.name=synthetic",
        "--set",
        "data.val_size=64",
        "--out",
        str(tmp_path / "p.json"),
    )
    assert code == 0 and json.loads((tmp_path / "p.json").read_text())["rows"]


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--set", "optim.lr=-1"],
        ["train", "--config", "/nonexistent.yaml"],
        ["sweep", "E99"],
        ["reproduce", "--only", "E99", "--dry-run"],
        ["status", "/nonexistent-runs"],
        ["probe", "nope", "--out", "x.csv"],
        ["probe", "output_bias", "--out", "x.txt"],
        ["ls", "widgets"],
        ["frobnicate"],
        ["train", "--set", "task=max_lr", "--set", "task_options.step=300", "--dry-run"],
        ["sweep", "E11a", "--dry-run", "--set", "task_options.step=300"],
        ["train", "--set", "model.init.conv=magic", "--dry-run"],
    ],
)
def test_bad_input_is_one_sentence_exit_2(argv, tmp_path):
    code, _, err = cli(*argv)
    assert code == 2, err
    assert "Traceback" not in err and err.strip().count("\n") == 0


def test_sweep_dry_run_prints_the_plan():
    code, _, err = cli("sweep", "E6", "--profile", "smoke", "--dry-run", "--runs", "/tmp/bnlab-never-created")
    assert code == 0 and "plan: profile smoke" in err and "E6" in err


def test_a_misspelt_task_option_names_the_valid_ones():
    code, _, err = cli("sweep", "E11a", "--dry-run", "--set", "task_options.step=300")
    assert code == 2 and "task_options.step" in err and "steps" in err, err


def test_train_runs_the_configured_task(tmp_path):
    """`bnlab train` with task max_lr runs the search (a summary with the largest stable lr and the trials),
    not a plain training that ignores the task."""
    common = ["model.depth=8", "data.name=synthetic", "data.synthetic_train=256", "data.val_size=64"]
    sets = [a for kv in common for a in ("--set", kv)]
    opts = ["task=max_lr", "task_options.steps=3", "task_options.iters=2", "task_options.start=0.01"]
    sets += [a for kv in opts for a in ("--set", kv)]
    code, out, _ = cli("train", "--runs", str(tmp_path / "runs"), *sets, "--quiet")
    assert code == 0
    run_dir = out.strip().splitlines()[-1]
    summary = json.loads(open(f"{run_dir}/summary.json").read())
    assert "max_stable_lr" in summary
    assert os.path.exists(f"{run_dir}/probes/max_lr_trials.jsonl")
    assert (
        not os.path.exists(f"{run_dir}/metrics.jsonl")
        or "train_eval" not in open(f"{run_dir}/metrics.jsonl").read()
    )
