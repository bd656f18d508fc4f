"""When a Monitor measures: every N steps, at listed steps, or log-spaced; each includes step 0.

    Schedule.every_n(10)          # 0, 10, 20, ...
    Schedule.at([0, 5, 100])      # exactly those steps
    Schedule.log(per_decade=4)    # 0, 1, 2, 3, 6, 10, 18, 32, 56, 100, ... (rounded, deduplicated)

`schedule_of(value)` accepts what `Monitor(schedule=...)` takes: a Schedule, an int (every N), a list of
steps, "log", or None (the default: log-spaced, 4 per decade, then at least every 1000 steps).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from bnlab.errors import UserError


@dataclass(frozen=True)
class Schedule:
    """`every`: every that many steps (0: never by period); `steps`: these steps; `per_decade`: log-spaced
    steps (this many per factor of 10), `cap`: with per_decade, at least every `cap` steps as well."""

    every: int = 0
    steps: frozenset[int] = frozenset()
    per_decade: int = 0
    cap: int = 0

    @staticmethod
    def every_n(n: int) -> Schedule:
        if int(n) < 1:
            raise UserError(f"a schedule's period must be a positive number of steps, not {n!r}")
        return Schedule(every=int(n))

    @staticmethod
    def at(steps: Iterable[int]) -> Schedule:
        s = frozenset(int(x) for x in steps)
        if not s or min(s) < 0:
            raise UserError("a schedule's steps must be a non-empty list of non-negative step numbers")
        return Schedule(steps=s)

    @staticmethod
    def log(per_decade: int = 4, cap: int = 0) -> Schedule:
        if int(per_decade) < 1:
            raise UserError(f"per_decade must be at least 1, not {per_decade!r}")
        return Schedule(per_decade=int(per_decade), cap=int(cap))

    def due(self, step: int) -> bool:
        if step < 0:
            return False
        if step in self.steps:
            return True
        if self.every and step % self.every == 0:
            return True
        if self.cap and step % self.cap == 0:
            return True
        if self.per_decade:
            return step == 0 or step in _log_steps(self.per_decade, step)
        return False

    def describe(self) -> str:
        parts = []
        if self.every:
            parts.append(f"every {self.every} steps")
        if self.steps:
            parts.append(f"at steps {sorted(self.steps)}")
        if self.per_decade:
            parts.append(f"log-spaced, {self.per_decade} per decade")
        if self.cap:
            parts.append(f"and every {self.cap} steps")
        return ", ".join(parts)


def _log_steps(per_decade: int, upto: int) -> set[int]:
    """round(10^(k/per_decade)) for k = 0, 1, ... up to `upto` (step 0 is added by `due`)."""
    out, k = set(), 0
    while True:
        s = round(10 ** (k / per_decade))
        if s > upto:
            return out
        out.add(s)
        k += 1


DEFAULT = Schedule(per_decade=4, cap=1000)


def schedule_of(value: object) -> Schedule:
    """A Schedule from what Monitor(schedule=...) accepts (module docstring)."""
    if value is None:
        return DEFAULT
    if isinstance(value, Schedule):
        return value
    if isinstance(value, bool):
        raise UserError(
            f"schedule must be a Schedule, a number of steps, a list of steps or 'log', not {value!r}"
        )
    if isinstance(value, int):
        return Schedule.every_n(value)
    if isinstance(value, str):
        if value == "log":
            return DEFAULT
        raise UserError(
            f"unknown schedule {value!r}; give a Schedule, a number of steps, a list of steps or 'log'"
        )
    if isinstance(value, Iterable):
        return Schedule.at(value)  # type: ignore[arg-type]
    raise UserError(
        f"schedule must be a Schedule, a number of steps, a list of steps or 'log', not {value!r}"
    )
