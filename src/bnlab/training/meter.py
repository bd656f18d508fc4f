"""TrainMeter: the running train loss/accuracy since the last evaluation, and the losses not yet read.

Losses and correct counts are summed on the device; the host reads them only when told (`read`), so with
train.sync_every > 1 the GPU never waits for the host. `read` returns the buffered per-step losses in step
order, so the first diverging step is still found exactly.
"""

from __future__ import annotations

from typing import Any

import torch


class TrainMeter:
    def __init__(self, device: torch.device) -> None:
        self.loss, self.correct, self.count = 0.0, 0, 0  # host sums since the last evaluation
        self._loss = torch.zeros((), dtype=torch.float64, device=device)  # device sums since the last fold
        self._correct = torch.zeros((), dtype=torch.int64, device=device)
        self.buffered: list[tuple[int, torch.Tensor]] = []  # (step, loss on the device) not yet read

    def buffer(self, step: int, loss: torch.Tensor) -> None:
        """This step's loss (on the device), to be read for the divergence check."""
        self.buffered.append((step, loss))

    def add(self, loss: torch.Tensor, out: torch.Tensor, y: torch.Tensor) -> None:
        """This step's minibatch, once its update is done: its sums stay on the device."""
        self._loss.add_(loss.double() * y.numel())
        self._correct.add_((out.argmax(1) == y).sum())
        self.count += y.numel()

    def read(self) -> list[tuple[int, float]]:
        """The buffered losses as (step, value) on the host (one read), and the buffer emptied."""
        if not self.buffered:
            return []
        vals = torch.stack([v for _, v in self.buffered]).double().cpu().tolist()
        out = [(s, v) for (s, _), v in zip(self.buffered, vals)]
        self.buffered.clear()
        return out

    def fold(self) -> None:
        """Move the device-side sums into the host sums (one host read)."""
        self.loss += float(self._loss)
        self.correct += int(self._correct)
        self._loss.zero_()
        self._correct.zero_()

    def take(self) -> dict[str, float] | None:
        """The train row since the last evaluation ({"loss", "acc"}, None if no step), and a reset."""
        row = {"loss": self.loss / self.count, "acc": self.correct / self.count} if self.count else None
        self.loss, self.correct, self.count = 0.0, 0, 0
        return row

    def state_dict(self) -> dict[str, Any]:
        return {"loss": self.loss, "correct": self.correct, "count": self.count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.loss, self.correct, self.count = state["loss"], state["correct"], state["count"]
