"""The dynamics probes scheduled inside a real training run: rows land in the run directory and the
training trajectory is bit-identical to the same run without probes (probes leave all state untouched)."""

from __future__ import annotations

import json
from pathlib import Path

from bnlab.config import validate
from bnlab.store import load_probes
from bnlab.training import run

PROBES = [
    {"name": "step_size_scan", "at": [0, 3], "options": {"etas": [1e-3, 1e-1]}},
    {"name": "sgd_noise", "at": [2], "batches": 3, "options": {"micro_batch": 4}},
    {"name": "gradient_geometry", "at": [3], "batches": 2, "options": {"etas": [1e-2]}},
    {"name": "hessian_top_eig", "at": [4], "options": {"iters": 20, "tol": 1e-2}},
]


def config(probes: list) -> object:
    return validate(
        {
            "model": {"name": "mlp", "depth": 3, "hidden": 16, "norm": "batch"},
            "data": {"name": "synthetic", "synthetic_train": 128, "synthetic_test": 32, "val_size": 0},
            "optim": {"lr": 0.1, "batch_size": 16},
            "train": {"steps": 6, "evaluate": False, "device": "cpu", "seed": 0, "log_every": 1},
            "probes": probes,
        }
    )


def train_losses(run_dir: Path) -> list[float]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if r["split"] == "train"]


def test_probes_in_training_leave_the_trajectory_unchanged(tmp_path: Path) -> None:
    with_probes = run(config(PROBES), tmp_path / "runs" / "a", progress=False)
    without = run(config([]), tmp_path / "other" / "b", progress=False)
    assert with_probes["state"] == without["state"] == "complete"
    losses = train_losses(tmp_path / "runs" / "a")
    # the logged train loss averages every step's minibatch loss: a probe that moved θ, .grad, BN statistics
    # or the momentum buffers at step 0, 2, 3 or 4 would change it
    assert losses and losses == train_losses(tmp_path / "other" / "b")
    summaries = [
        json.loads((d / "summary.json").read_text())
        for d in (tmp_path / "runs" / "a", tmp_path / "other" / "b")
    ]
    assert summaries[0]["last10_loss"] == summaries[1]["last10_loss"]
    for p in PROBES:
        df = load_probes(tmp_path / "runs", p["name"])
        assert sorted(df["step"].unique()) == p["at"]
        assert df["value"].notna().any()
    noise = load_probes(tmp_path / "runs", "sgd_noise")
    assert {"noise", "C", "B_simple"} <= set(noise["metric"])
