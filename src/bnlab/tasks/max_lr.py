"""The largest stable learning rate of a configuration (E11: max stable lr vs depth; E12: per norm, per batch size).

`max_stable_lr` is generic: it searches lr by bisection in log space within [lo, hi], calling
`is_stable(lr, seed)` — in bnlab a short training run of K steps at constant lr (bnlab/tasks/max_lr_task.py)
— and an lr counts as stable only if it is stable for every seed (later seeds are skipped once one fails).
Stability is assumed monotone in lr (stable below a threshold, unstable above); the answer is a bracket
[max_stable_lr, min_unstable_lr] with the threshold inside. `censored` says the top of the range was
stable (the true maximum is above `hi`); `lower_censored` that even `lo` was unstable.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from bnlab.errors import UserError

WINDOW = 10  # steps averaged at the end of a trial


def _rule(first: float | None, last_mean: float | None, diverged: bool) -> bool:
    if diverged or first is None or last_mean is None:
        return False
    if not (math.isfinite(first) and math.isfinite(last_mean)):
        return False
    return last_mean < first


def trial_stability(
    losses: Iterable[float] | float | None, *rest: float | bool | None, window: int = WINDOW
) -> bool:
    """Stable = not diverged, losses finite, and the mean loss over the last `window` steps below the first
    step's loss.

    `trial_stability(losses, diverged)` with the per-step training losses, or
    `trial_stability(first_loss, last_mean_loss, diverged)` with the two numbers a run summary keeps.
    """
    if len(rest) == 2:
        first, last_mean, diverged = losses, rest[0], rest[1]
        if not (first is None or isinstance(first, (int, float))):
            raise TypeError("the three-argument form takes (first_loss, last_mean_loss, diverged)")
        return _rule(
            None if first is None else float(first),
            None if last_mean is None else float(last_mean),
            bool(diverged),
        )
    if len(rest) != 1 or losses is None or isinstance(losses, (int, float)):
        raise TypeError(
            "call trial_stability(losses, diverged) or trial_stability(first_loss, last_mean_loss, diverged)"
        )
    values = [float(v) for v in losses]
    if len(values) < 2:
        return False  # one step shows no decrease
    if not all(math.isfinite(v) for v in values):
        return False
    tail = values[-window:]
    return _rule(values[0], sum(tail) / len(tail), bool(rest[0]))


@dataclass
class MaxLrResult:
    """max_stable_lr: largest lr found stable (None if even `lo` was not); min_unstable_lr: smallest lr
    found unstable (None if `hi` was stable: censored). trials: (lr, seed, stable) in the order run."""

    max_stable_lr: float | None
    min_unstable_lr: float | None
    censored: bool
    lower_censored: bool
    lo: float
    hi: float
    seeds: tuple[int, ...]
    steps: int | None = None  # K, the trial length, when the caller says
    trials: list[tuple[float, int, bool]] = field(default_factory=list)

    @property
    def bracket(self) -> tuple[float | None, float | None]:
        return self.max_stable_lr, self.min_unstable_lr

    @property
    def n_seeds(self) -> int:
        return len(self.seeds)


def max_stable_lr(
    is_stable: Callable[[float, int], bool],
    lo: float = 1e-6,
    hi: float = 100.0,
    seeds: Sequence[int] = (0,),
    iters: int = 30,
    tol: float = 0.05,
    start: float | None = None,
    steps: int | None = None,
) -> MaxLrResult:
    """Largest lr in [lo, hi] with `is_stable(lr, seed)` true for all seeds, by log-scale bisection.

    start: the first lr tried (default √(lo·hi)); then `hi` if start was stable, `lo` if not; then at most
    `iters` bisections at geometric midpoints, stopping once log10(upper/lower) <= tol (0.05: within 12%).
    steps: K, recorded in the result only.
    """
    if not (0 < lo < hi) or not math.isfinite(hi):
        raise UserError(f"max_stable_lr needs 0 < lo < hi, got lo={lo}, hi={hi}")
    if not seeds:
        raise UserError("max_stable_lr needs at least one seed")
    if iters < 0 or tol <= 0:
        raise UserError(f"max_stable_lr needs iters >= 0 and tol > 0, got iters={iters}, tol={tol}")
    first = math.sqrt(lo * hi) if start is None else float(start)
    if not lo <= first <= hi:
        raise UserError(f"start lr {first} is outside [lo, hi] = [{lo}, {hi}]")
    seeds = tuple(int(s) for s in seeds)
    trials: list[tuple[float, int, bool]] = []

    def stable(lr: float) -> bool:
        for s in seeds:
            ok = bool(is_stable(lr, s))
            trials.append((lr, s, ok))
            if not ok:
                return False
        return True

    def result(best: float | None, worst: float | None) -> MaxLrResult:
        return MaxLrResult(
            max_stable_lr=best,
            min_unstable_lr=worst,
            censored=worst is None,
            lower_censored=best is None,
            lo=lo,
            hi=hi,
            seeds=seeds,
            steps=steps,
            trials=trials,
        )

    if stable(first):
        best: float | None = first
        if first == hi or stable(hi):
            return result(hi, None)
        worst: float | None = hi
    else:
        worst = first
        if first == lo or not stable(lo):
            return result(None, lo)
        best = lo
    assert best is not None and worst is not None
    for _ in range(iters):
        if math.log10(worst / best) <= tol:
            break
        mid = math.sqrt(best * worst)
        if stable(mid):
            best = mid
        else:
            worst = mid
    return result(best, worst)
