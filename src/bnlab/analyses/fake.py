"""Synthetic run directories written by hand (no training), for the analyses' `fake_runs`: the files the
report reads (config.yaml, status.json, summary.json, meta.json, env.json, metrics.jsonl, probes/*.jsonl
+ .npz), with numbers chosen so that a verdict rule gives a known answer."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import yaml

ENV = {
    "python": "3.11",
    "torch": "2.x",
    "numpy": "2.x",
    "bnlab": "0.1.0",
    "cuda": None,
    "device": "cpu",
    "device_name": "test",
    "threads": 2,
    "git_sha": "0123456789abcdef",
    "git_dirty": False,
}
DEFAULTS: dict[str, Any] = {
    "model.name": "resnet_cifar",
    "model.depth": 8,
    "model.init.conv": "xavier",
    "model.block": "post",
    "model.placement": "all",
    "model.norm": "batch",
    "model.init.balanced_output_bias": False,
    "model.fixup": False,
    "model.skipinit": False,
    "optim.lr": 0.1,
    "optim.momentum": 0.9,
    "optim.batch_size": 128,
    "train.seed": 0,
    "train.steps": None,
    "train.epochs": 2.0,
    "task": "train",
}


def _nest(flat: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in flat.items():
        d = out
        parts = k.split(".")
        for p in parts[:-1]:
            d = d.setdefault(p, {})
        d[parts[-1]] = v
    return out


class FakeRoot:
    """A runs root that fake runs are written into, tagged "<exp>/<profile>" like `bnlab reproduce` does."""

    def __init__(self, path: Path, profile: str) -> None:
        self.path, self.profile = Path(path), profile
        self.path.mkdir(parents=True, exist_ok=True)

    def run(
        self,
        exp: str,
        cfg: dict[str, Any],
        *,
        state: str = "complete",
        step: int = 0,
        summary: dict[str, Any] | None = None,
        reason: str | None = None,
    ) -> Path:
        """One run directory of experiment `exp` with config DEFAULTS | cfg (dotted keys)."""
        flat = {**DEFAULTS, **cfg}
        rid = hashlib.sha1(
            json.dumps([exp, self.profile, sorted(flat.items(), key=str)], default=str).encode()
        ).hexdigest()[:12]
        d = self.path / rid
        (d / "probes").mkdir(parents=True, exist_ok=True)
        (d / "config.yaml").write_text(yaml.safe_dump(_nest(flat)))
        status = {"state": state, "step": step, "reason": reason, "loss": None, "warnings": [], "schema": 1}
        (d / "status.json").write_text(json.dumps(status))
        (d / "summary.json").write_text(json.dumps(summary or {}))
        (d / "meta.json").write_text(json.dumps({"experiments": [f"{exp}/{self.profile}"]}))
        (d / "env.json").write_text(json.dumps(ENV))
        return d


def probe(
    d: Path, name: str, rows: list[dict[str, Any]], arrays: dict[str, np.ndarray] | None = None
) -> None:
    """probes/<name>.jsonl (+ .npz; keys as bnlab.store.rundir.step_key writes them) of run directory `d`."""
    with open(d / "probes" / f"{name}.jsonl", "w") as f:
        for r in rows:
            f.write(json.dumps({"probe": name, "layer": "model", "paper_layer": None, "step": 0, **r}) + "\n")
    if arrays:
        np.savez_compressed(d / "probes" / f"{name}.npz", **arrays)  # type: ignore[arg-type]


def metrics(d: Path, accs: list[float], diverge: bool = False, epochs: float = 2.0) -> None:
    """metrics.jsonl with train_eval and test rows at len(accs) evaluations (the last NaN if `diverge`)."""
    with open(d / "metrics.jsonl", "w") as f:
        for i, a in enumerate(accs):
            for split in ("train_eval", "test"):
                row = {
                    "step": (i + 1) * 10,
                    "epoch": epochs * (i + 1) / len(accs),
                    "split": split,
                    "loss": 1.0,
                    "acc": a if not (diverge and i == len(accs) - 1) else float("nan"),
                    "lr": 0.1,
                    "wall_s": i,
                }
                f.write(json.dumps(row) + "\n")
