"""Task `diverging_step` (E5, Fig. 4): train an unnormalized net at a diverging lr until the divergence
criterion fires at step t, then scan the update Δθ that produced θ_t.

The trainer keeps the state before each update and saves it as ckpt/diverging.pt when divergence fires
(θ_{t-1}, optimizer state, t). Here: Δθ = the optimizer's update on minibatch t-1 at θ_{t-1}; on the
minibatch of step t, for s on a grid in [0, 1], every channel's mean and variance at the chosen layers
(default paper layers 8, 44, 80 by relative depth) of θ_{t-1} + sΔθ. The loss at s = 1 is the loss
that fired the criterion.

task_options: layers (paper layer numbers or module names), grid (>= 21 points).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from bnlab.config import Config
from bnlab.store import RunDir, write_probe


def run_task(cfg: Config, run_dir: str | Path, progress: bool = False) -> dict[str, Any]:
    from bnlab.probes.diverging import diverging_step
    from bnlab.training.loop import build, resolve_device
    from bnlab.training.optim import make_optimizer
    from bnlab.training.schedules import lr_at

    rd = RunDir(run_dir)
    if not rd.is_terminal():
        from bnlab.training import run as train_run

        train_run(cfg, rd.path, progress=progress)
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
    from bnlab.training.loop import total_steps

    total = total_steps(cfg, dd.steps_per_epoch(cfg.optim.batch_size))
    for g in optimizer.param_groups:
        g["lr"] = lr_at(prev_step, total, cfg.optim)
    kw = dict(seed=cfg.train.seed, augment=cfg.data.augment)
    batch_prev = dd.train_batch(prev_step, cfg.optim.batch_size, **kw)
    batch_fired = dd.train_batch(fired, cfg.optim.batch_size, **kw)
    opts = dict(cfg.task_options)
    result = diverging_step(
        model,
        batch_prev,
        batch_fired,
        optimizer,
        layers=opts.get("layers", (8, 44, 80)),
        grid=int(opts.get("grid", 21)),
        precision=str(opts.get("precision", "float64")),
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
