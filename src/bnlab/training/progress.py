"""Progress on stderr: a rich progress bar on a terminal, otherwise a line every `log_every` steps
(`train.log_every`; without it, every 10 seconds), and always one at the last step."""

from __future__ import annotations

import sys
import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.progress import Progress as _RichProgress


class Progress:
    def __init__(
        self,
        total: int,
        *,
        enabled: bool = True,
        start: int = 0,
        description: str = "train",
        log_every: int | None = None,
    ) -> None:
        self.total, self.enabled = total, enabled and total > 0
        self.log_every = log_every
        self.last_step = start
        self.console = Console(stderr=True)
        self.tty = sys.stderr.isatty()
        self.last_line = 0.0
        self.description = description
        self.rich: _RichProgress | None = None
        if self.enabled and self.tty:
            self.rich = _RichProgress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[info]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=self.console,
                transient=False,
            )
            self.rich.start()
            self.task = self.rich.add_task(description, total=total, completed=start, info="")

    def update(self, step: int, *, loss: float, lr: float, img_s: float) -> None:
        if not self.enabled:
            return
        info = f"loss {loss:.4f} lr {lr:.3g} {img_s:.0f} img/s"
        if self.rich is not None:
            self.rich.update(self.task, completed=step, info=info)
        elif self._due(step):
            self.last_line, self.last_step = time.monotonic(), step
            self.console.print(f"{self.description} step {step}/{self.total} {info}", highlight=False)

    def _due(self, step: int) -> bool:
        if step == self.total:
            return True
        if self.log_every:  # steps between lines; updates arrive at sync points, so the first one past it
            return step // self.log_every > self.last_step // self.log_every
        return time.monotonic() - self.last_line > 10

    def note(self, text: str) -> None:
        if self.enabled:
            self.console.print(f"{self.description} {text}", highlight=False)

    def close(self, text: str = "") -> None:
        if self.rich is not None:
            self.rich.stop()
            self.rich = None
        if self.enabled and text:
            self.console.print(f"{self.description} {text}", highlight=False)
