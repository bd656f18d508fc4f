"""ProbeCallback: a Monitor inside a Lightning Trainer (the `lightning` extra).

    trainer = lightning.Trainer(callbacks=[ProbeCallback(probes="cheap", schedule=10, runs="runs")])

It keeps each training batch (`on_train_batch_start`) and measures in `on_before_optimizer_step`, where
`.grad` holds the step's gradient and the update has not happened: the same point as `monitor.step` in a
plain loop, at `trainer.global_step`. Like the Monitor it changes nothing the training reads, so the trained
weights are identical with and without it. `batch_to_xy` turns a batch into (inputs, targets) (default: its
first two items); `writers` defaults to the run directory and TensorBoard when the `tb` extra is installed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

try:
    import lightning as L
except ImportError as e:  # the extra is not installed: say which
    raise ImportError(
        "bnlab.monitor.lightning needs the lightning extra: pip install 'bnlab[lightning]'"
    ) from e

from bnlab.monitor.monitor import Monitor


def _tensorboard_installed() -> bool:
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return False
    return True


def first_two(batch: Any) -> tuple[Any, Any]:
    return batch[0], batch[1]


class ProbeCallback(L.Callback):
    def __init__(
        self,
        *,
        probes: object = "cheap",
        schedule: object = None,
        runs: str | Path = "runs",
        run_dir: str | Path | None = None,
        name: str | None = None,
        writers: list[Any] | None = None,
        loss_fn: Any = None,
        batch_to_xy: Callable[[Any], tuple[Any, Any]] = first_two,
    ) -> None:
        self.options = dict(
            probes=probes, schedule=schedule, runs=runs, run_dir=run_dir, name=name, loss_fn=loss_fn
        )
        self.writers = (
            writers if writers is not None else (["tensorboard"] if _tensorboard_installed() else [])
        )
        self.batch_to_xy = batch_to_xy
        self.monitor: Monitor | None = None
        self.batch: Any = None
        self.loss: Any = None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            optimizer = trainer.optimizers[0] if trainer.optimizers else None
            self.monitor = Monitor(pl_module, optimizer, writers=self.writers, **self.options)

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self.batch = batch

    def on_before_optimizer_step(
        self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Any
    ) -> None:
        if self.monitor is None or self.batch is None:
            return
        x, y = self.batch_to_xy(self.batch)
        loss = trainer.callback_metrics.get("train_loss")
        self.monitor.step(trainer.global_step, x, y, loss=loss)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.monitor is not None:
            self.monitor.close()

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        if self.monitor is not None:
            self.monitor.close("failed", f"{type(exception).__name__}: {exception}")
