"""Observers: what a run asks for beyond training itself, as small hooks the loop calls in order.

A step calls, in this order: `on_loss` (each minibatch loss once it is read on the host, in step order,
before its update when the host reads every step) -> `after_backward` (`.grad` holds the step's gradient,
before clipping) -> `before_update` (after clipping, just before `optimizer.step()`); then `on_eval` after
each evaluation, `on_diverged` when the divergence criterion fires, `after_training` once the last step
is done, and `close` always. Every hook is a no-op by default. A run that asks for no observer pays for
none: in particular, only PreUpdateSnapshot copies the model and optimizer state, once per step.

What asks for what (`observers_for(cfg)` builds the first four from the config):
    LossWindow         always: first loss and the mean of the last 10 (summary.json; the max-lr search's
                       stability rule reads them)
    ProbeSchedules     cfg.probes
    LayerStats         train.layer_stats_every > 0
    TensorBoard        train.tensorboard (and the `tb` extra installed)
    PreUpdateSnapshot  the diverging-step task (`bnlab.tasks.diverging_task`): ckpt/diverging.pt
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bnlab.config import Config
from bnlab.store.files import atomic_write_bytes
from bnlab.store.rundir import ProbeWriter
from bnlab.training.divergence import DivergenceCheck


@dataclass
class RunContext:
    """What observers may read: the run's objects, fixed for the whole run."""

    cfg: Config
    model: nn.Module
    optimizer: torch.optim.Optimizer
    data: Any  # bnlab.data.DeviceData
    run_dir: Path
    total: int  # optimizer steps in the whole run
    start: int  # the step this session starts at (> 0 when resumed)
    divergence: DivergenceCheck


class Observer:
    state_key: str | None = None  # key of its state in a checkpoint (None: it keeps none)
    needs_sync: bool = False  # True: each loss must be read before its update (the run reads every step)

    def start(self, ctx: RunContext) -> None:
        self.ctx = ctx

    def due(self, step: int) -> bool:
        """True if it acts during step `step` (the loop reads the buffered losses first)."""
        return False

    def on_loss(self, step: int, loss: float) -> None: ...

    def after_backward(self, step: int, lr: float) -> None: ...

    def before_update(self, step: int) -> None: ...

    def on_eval(self, step: int, rows: dict[str, dict[str, Any]]) -> None: ...

    def on_diverged(self, step: int, loss: float, verdict: str) -> None: ...

    def after_training(self, step: int, lr: float) -> None: ...

    def summary(self) -> dict[str, Any]:
        return {}

    def state_dict(self) -> Any:
        return None

    def load_state_dict(self, state: Any) -> None: ...

    def close(self) -> None: ...


class LossWindow(Observer):
    """The last `size` minibatch losses; summary: last10_loss (their mean). Kept in checkpoints as "recent"."""

    state_key = "recent"

    def __init__(self, size: int = 10) -> None:
        self.size = size
        self.recent: list[float] = []

    def on_loss(self, step: int, loss: float) -> None:
        self.recent = (self.recent + [loss])[-self.size :]

    def summary(self) -> dict[str, Any]:
        return {"last10_loss": sum(self.recent) / len(self.recent) if self.recent else None}

    def state_dict(self) -> list[float]:
        return list(self.recent)

    def load_state_dict(self, state: Any) -> None:
        self.recent = list(state)


class ProbeSchedules(Observer):
    """cfg.probes at their steps: on the gradient of the step (before the update), and at `total` after
    the last update (with `.grad` cleared)."""

    def start(self, ctx: RunContext) -> None:
        super().start(ctx)
        self.schedules = [(p, p.steps(ctx.total)) for p in ctx.cfg.probes]
        self.writer = ProbeWriter(ctx.run_dir)  # one per run: a write reads the file only if someone else wrote

    def due(self, step: int) -> bool:
        return any(step in steps for _, steps in self.schedules)

    def after_backward(self, step: int, lr: float) -> None:
        for sched, steps in self.schedules:
            if step in steps:
                self.writer.write(sched.name, self._run(sched, step, lr), step=step)

    def after_training(self, step: int, lr: float) -> None:
        if self.due(step):
            self.ctx.optimizer.zero_grad(set_to_none=True)
            self.after_backward(step, lr)

    def _run(self, sched, step: int, lr: float):
        from bnlab.probes.context import ProbeContext
        from bnlab.probes.runner import apply_probe, probe_batch_seed

        ctx, cfg = self.ctx, self.ctx.cfg
        batches = ctx.data.probe_batches(
            sched.batches, sched.batch_size or cfg.optim.batch_size, seed=probe_batch_seed(cfg)
        )
        pctx = ProbeContext(
            step=step,
            optimizer=ctx.optimizer,
            lr=lr,
            run_dir=ctx.run_dir,
            config=cfg,
            extra={"dataset_size": ctx.data.n_train},  # N of the training split (sgd_noise's exact bound)
        )
        return apply_probe(sched.name, ctx.model, batches, pctx, sched.options)


class LayerStats(Observer):
    """The layer_stats probe (grad/weight norms, update ratio) every `every` steps, before the update."""

    def __init__(self, every: int) -> None:
        self.every = every

    def start(self, ctx: RunContext) -> None:
        super().start(ctx)
        self.writer = ProbeWriter(ctx.run_dir)

    def due(self, step: int) -> bool:
        return step % self.every == 0

    def after_backward(self, step: int, lr: float) -> None:
        if step % self.every == 0:
            from bnlab.probes.context import ProbeContext
            from bnlab.probes.layer_stats import layer_stats

            ctx = ProbeContext(step=step, optimizer=self.ctx.optimizer, lr=lr)
            self.writer.write("layer_stats", layer_stats(self.ctx.model, ctx=ctx), step=step)


class TensorBoard(Observer):
    """Evaluation losses/accuracies as TensorBoard scalars in run_dir/tb (events after a resume point are
    purged); nothing when the `tb` extra (tensorboard) is not installed."""

    writer: Any = None

    def start(self, ctx: RunContext) -> None:
        super().start(ctx)
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # the `tb` extra is not installed
            return
        purge = ctx.start if ctx.start > 0 else None
        self.writer = SummaryWriter(log_dir=str(ctx.run_dir / "tb"), purge_step=purge)

    def on_eval(self, step: int, rows: dict[str, dict[str, Any]]) -> None:
        if self.writer is not None:
            for split, r in rows.items():
                self.writer.add_scalar(f"{split}/loss", r["loss"], step)
                self.writer.add_scalar(f"{split}/acc", r["acc"], step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class PreUpdateSnapshot(Observer):
    """θ and optimizer state before each update, kept one step; when divergence fires at step t, the state
    before update t-1 is saved as ckpt/diverging.pt (with t, the loss and the threshold) for the
    diverging-step scan. One full state copy per step: only the run that asks for it pays for it."""

    needs_sync = True  # the copy of step t-1 is only useful if step t's loss is read before update t

    def __init__(self) -> None:
        self.prev: dict[str, Any] | None = None

    def before_update(self, step: int) -> None:
        self.prev = snapshot_state(self.ctx.model, self.ctx.optimizer, step)

    def on_diverged(self, step: int, loss: float, verdict: str) -> None:
        if self.prev is None or self.prev["step"] != step - 1:
            return  # diverged at its first step (or first step of a resumed session): no update to keep
        buf = io.BytesIO()
        torch.save(
            {
                **self.prev,
                "fired_step": step,
                "loss": loss if math.isfinite(loss) else float("inf"),
                "threshold": self.ctx.divergence.limit(),
            },
            buf,
        )
        atomic_write_bytes(self.ctx.run_dir / "ckpt" / "diverging.pt", buf.getvalue())


def snapshot_state(model: nn.Module, optimizer: torch.optim.Optimizer, step: int) -> dict[str, Any]:
    """A copy of θ (state dict) and the optimizer state at `step`, before its update."""
    sd = optimizer.state_dict()
    return {
        "model": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "optimizer": {
            "state": {
                k: {n: (t.clone() if torch.is_tensor(t) else t) for n, t in v.items()}
                for k, v in sd["state"].items()
            },
            "param_groups": [dict(g) for g in sd["param_groups"]],
        },
        "step": step,
    }


def observers_for(cfg: Config) -> list[Observer]:
    """The observers a config asks for (see the module docstring); tasks may add their own to `run`."""
    out: list[Observer] = [LossWindow()]
    if cfg.probes:
        out.append(ProbeSchedules())
    if cfg.train.layer_stats_every:
        out.append(LayerStats(cfg.train.layer_stats_every))
    if cfg.train.tensorboard:
        out.append(TensorBoard())
    return out
