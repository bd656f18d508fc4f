"""ProbeContext: what the fit loop hands a data probe (`probe(model, batches, *, ctx, **options)`).

A probe scheduled during training runs after backward and before the optimizer step: the model's
`.grad` holds the current minibatch gradient, `ctx.optimizer` the state before this step's update.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch


@dataclass
class ProbeContext:
    step: int = 0  # optimizer steps taken so far (0 = at initialization)
    optimizer: torch.optim.Optimizer | None = None
    lr: float | None = None  # the lr this step's update will use (schedule and warm-up applied)
    run_dir: Path | None = None
    config: Any = None  # bnlab.config.Config of the run, when there is one
    loss_fn: Any = None  # None: mean cross-entropy
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def step_lr(self) -> float | None:
        """The lr of the coming step: `lr`, else the optimizer's first parameter group's, else None."""
        if self.lr is None and self.optimizer is not None:
            return float(self.optimizer.param_groups[0]["lr"])
        return self.lr
