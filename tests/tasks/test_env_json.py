"""Every run kind writes env.json as a training run does: the rmt, max_lr and diverging_step tasks."""

import json

import pytest

from bnlab.store.rundir import environment
from bnlab.tasks import execute, resolve

KEYS = set(environment("cpu", 1, False))  # what a training run's env.json holds


def env_keys(run_dir):
    env = json.loads((run_dir / "env.json").read_text())
    assert env["torch"] and env["python"] and "git_sha" in env
    return set(env)


@pytest.mark.parametrize(
    "over",
    [
        ["task=rmt", "task_options={kind: spectra, n: 20, ms: [1], draws: 1, bins: 4}"],
        [
            "task=max_lr",
            "task_options={steps: 2, iters: 1, lo: 0.001, hi: 100, start: 0.1}",
            "train.evaluate=false",
        ],
        [
            "task=diverging_step",
            "task_options={layers: [conv1], grid: 3, precision: float32}",
            "optim.lr=5.0",
        ],
    ],
    ids=["rmt", "max_lr", "diverging_step"],
)
def test_task_writes_env_json(tmp_path, tiny_overrides, over):
    st = execute(resolve(None, tiny_overrides + ["model.norm=none", *over]), tmp_path / "r", progress=False)
    assert st["state"] in ("complete", "diverged")
    assert env_keys(tmp_path / "r") == KEYS
