"""Task `diverging_step` (E5, Fig. 4): train an unnormalized net at a diverging lr until the divergence
criterion fires at step t, then scan the update Δθ that produced θ_t.

This task asks the trainer for the PreUpdateSnapshot observer, which keeps the state before each update
and saves it as ckpt/diverging.pt when divergence fires (θ_{t-1}, optimizer state, t); no other run
copies its state per step. Here: Δθ = the optimizer's update on minibatch t-1 at θ_{t-1}; on the
minibatch of step t, for s on a grid in [0, 1], every channel's mean and variance at the chosen layers
(default paper layers 8, 44, 80 by relative depth) of θ_{t-1} + sΔθ. The loss at s = 1 is the loss
that fired the criterion.

task_options: DivergingOptions below.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field

from bnlab.config import Config
from bnlab.store import RunDir, write_probe
from bnlab.tasks.options import TaskOptions


class DivergingOptions(TaskOptions):
    layers: list[int | str] = Field(default_factory=lambda: [8, 44, 80])  # paper layers or module names
    grid: int = Field(21, ge=2)  # points s in [0, 1] along the update
    precision: Literal["float64", "float32"] = "float64"  # of the scan's forward passes


def run_task(cfg: Config, run_dir: str | Path, progress: bool = False) -> dict[str, Any]:
    from bnlab.probes import diverging_step
    from bnlab.training import run as train_run
    from bnlab.training.loop import build, resolve_device, total_steps
    from bnlab.training.observers import PreUpdateSnapshot
    from bnlab.training.optim import make_optimizer
    from bnlab.training.schedules import lr_at

    opts = DivergingOptions.parse(cfg.task_options, cfg.task)
    rd = RunDir(run_dir)
    if not rd.is_terminal():
        train_run(cfg, rd.path, progress=progress, observers=[PreUpdateSnapshot()])
    status = rd.status()
    path = rd.ckpt / "diverging.pt"
    if status["state"] != "diverged" or not path.exists():
        rd.add_warning(
            "the run did not diverge (or diverged at its first step): no diverging update to scan; "
            "raise optim.lr"
        )
        write_probe(rd.path, "diverging_step", _empty(), step=0)
        return rd.status()
    device = resolve_device(cfg.train.device)
    saved = torch.load(io.BytesIO(path.read_bytes()), map_location=device, weights_only=True)
    model, _, dd = build(cfg, device)
    model.load_state_dict(saved["model"])
    optimizer = make_optimizer(model, cfg.optim)
    optimizer.load_state_dict(saved["optimizer"])
    prev_step, fired = int(saved["step"]), int(saved["fired_step"])
    total = total_steps(cfg, dd.steps_per_epoch(cfg.optim.batch_size))
    for g in optimizer.param_groups:
        g["lr"] = lr_at(prev_step, total, cfg.optim)
    kw = dict(seed=cfg.train.seed, augment=cfg.data.augment)
    batch_prev = dd.train_batch(prev_step, cfg.optim.batch_size, **kw)
    batch_fired = dd.train_batch(fired, cfg.optim.batch_size, **kw)
    result = diverging_step(
        model,
        batch_prev,
        batch_fired,
        optimizer,
        layers=tuple(opts.layers),
        grid=opts.grid,
        precision=opts.precision,
    )
    result.attrs.update(
        fired_step=fired, threshold=float(saved["threshold"]), fired_loss=float(saved["loss"])
    )
    write_probe(rd.path, "diverging_step", result, step=fired)
    return rd.status()


def _empty():
    from bnlab.probes.result import ProbeResult

    return ProbeResult.from_rows(
        [{"probe": "diverging_step", "layer": "model", "metric": "diverged", "value": 0.0}]
    )
