"""Learning-rate schedules: lr(step) = base lr x warm-up factor x schedule factor.

Milestones are fractions of the whole budget (He et al.: /10 at 50% and 75%). Warm-up factors are
relative to the base lr (He et al.'s 0.01 for ~400 steps at lr 0.1 = {kind: constant, steps: 400,
factor: 0.1}); after warm-up the schedule is exactly what it would have been without it.
"""

from __future__ import annotations

import math

from bnlab.config import OptimConfig


def lr_at(step: int, total_steps: int, optim: OptimConfig) -> float:
    base = optim.lr
    w = optim.warmup
    if w.kind != "none" and step < w.steps:
        if w.kind == "constant":
            return base * w.factor
        # linear: from factor x base at step 0 up to base at step `steps`
        return base * (w.factor + (1.0 - w.factor) * step / w.steps)
    frac = step / total_steps if total_steps > 0 else 0.0
    if optim.schedule == "constant":
        return base
    if optim.schedule == "cosine":
        return base * 0.5 * (1.0 + math.cos(math.pi * min(frac, 1.0)))
    passed = sum(1 for m in optim.milestones if frac >= m)
    return base * optim.gamma**passed
