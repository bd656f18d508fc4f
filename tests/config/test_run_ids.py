"""Run ids of existing configs never change: these ids are in docs/results/cpu/runs.csv (cpu profile).

Each config is checked both schema-only (`bnlab.config.validate`) and fully resolved (`bnlab.tasks.check`:
registry names and typed task options), so typing the task options cannot re-key a run."""

import pytest

from bnlab.config import Config, run_id, validate

KNOWN = [
    (
        "E01",
        "57dcc7939de9",
        {
            "data": {"name": "cifar10", "subset": 5000},
            "model": {"depth": 20, "init": {"conv": "xavier"}, "name": "resnet_cifar", "norm": "batch"},
            "optim": {
                "batch_size": 128,
                "lr": 0.1,
                "momentum": 0.9,
                "schedule": "step",
                "weight_decay": 0.0001,
            },
            "train": {"epochs": 3, "eval_every": 0.25, "eval_test_subset": 1000, "seed": 0},
        },
    ),
    (
        "E02",
        "2947f724d420",
        {
            "data": {"name": "cifar10"},
            "model": {"depth": 20, "init": {"conv": "xavier"}, "name": "resnet_cifar", "norm": "batch"},
            "optim": {"batch_size": 128, "lr": 0.1},
            "probes": [
                {
                    "at": [0, 50],
                    "batch_size": 32,
                    "batches": 16,
                    "name": "sgd_noise",
                    "options": {"per_example": "frozen"},
                }
            ],
            "train": {"evaluate": False, "steps": 50},
        },
    ),
    (
        "E05",
        "7250efaaa5d1",
        {
            "data": {"name": "cifar10"},
            "model": {"depth": 110, "init": {"conv": "xavier"}, "name": "resnet_cifar", "norm": "none"},
            "optim": {"batch_size": 128, "lr": 0.1},
            "task": "diverging_step",
            "task_options": {"grid": 21, "layers": [8, 44, 80]},
            "train": {"epochs": 1, "evaluate": False},
        },
    ),
    (
        "E10",
        "722b3102113f",
        {
            "task": "rmt",
            "task_options": {"bins": 50, "draws": 10, "kind": "spectra", "ms": [1, 3, 5], "n": 1000},
        },
    ),
    (
        "E11a",
        "33ead79ebeed",
        {
            "data": {"name": "cifar10", "subset": 10000},
            "model": {"depth": 20, "init": {"conv": "xavier"}, "name": "resnet_cifar", "norm": "batch"},
            "optim": {"batch_size": 128},
            "task": "max_lr",
            "task_options": {"iters": 4, "seeds": [0], "start": 0.1, "steps": 20},
            "train": {"evaluate": False},
        },
    ),
    (
        "E11b",
        "872e1b43ef79",
        {
            "data": {"name": "cifar10", "subset": 10000},
            "model": {
                "depth": 20,
                "init": {"conv": "xavier"},
                "name": "resnet_cifar",
                "norm": "batch",
                "placement": "all",
            },
            "optim": {"batch_size": 128, "lr": 0.0001},
            "task": "train",
            "task_options": {"iters": 4, "seeds": [0], "start": 0.01, "steps": 20},
            "train": {"epochs": 3, "eval_test_subset": 2000},
        },
    ),
    (
        "E12d",
        "1e55068702bb",
        {
            "data": {"name": "cifar10", "subset": 10000},
            "model": {
                "depth": 20,
                "fixup": False,
                "init": {"conv": "kaiming_fan_in"},
                "name": "resnet_cifar",
                "norm": "none",
                "skipinit": False,
            },
            "optim": {"batch_size": 128},
            "task": "max_lr",
            "task_options": {"iters": 4, "seeds": [0], "start": 0.01, "steps": 20},
            "train": {"evaluate": False},
        },
    ),
]


def test_default_config_id():
    assert run_id(Config()) == "4087b4f90e4f"


@pytest.mark.parametrize("exp,rid,raw", KNOWN, ids=[k[0] for k in KNOWN])
def test_known_configs_keep_their_ids(exp, rid, raw):
    assert run_id(validate(raw)) == rid


@pytest.mark.parametrize("exp,rid,raw", KNOWN, ids=[k[0] for k in KNOWN])
def test_checked_configs_keep_their_ids(exp, rid, raw):
    from bnlab.tasks import check

    assert run_id(check(validate(raw))) == rid
