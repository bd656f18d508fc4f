"""Progress on stderr: a rich progress bar on a terminal, a line every few seconds otherwise."""

from __future__ import annotations

import sys
import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.progress import Progress as _RichProgress


class Progress:
    def __init__(
        self, total: int, *, enabled: bool = True, start: int = 0, description: str = "train"
    ) -> None:
        self.total, self.enabled = total, enabled and total > 0
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
        elif time.monotonic() - self.last_line > 10 or step == self.total:
            self.last_line = time.monotonic()
            self.console.print(f"{self.description} step {step}/{self.total} {info}", highlight=False)

    def note(self, text: str) -> None:
        if self.enabled:
            self.console.print(f"{self.description} {text}", highlight=False)

    def close(self, text: str = "") -> None:
        if self.rich is not None:
            self.rich.stop()
            self.rich = None
        if self.enabled and text:
            self.console.print(f"{self.description} {text}", highlight=False)
