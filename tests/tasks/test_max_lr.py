"""max_stable_lr on quadratics whose stability threshold is known: plain GD is stable iff lr < 2/λ_max,
heavy-ball momentum β iff lr < 2(1+β)/λ_max."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bnlab.errors import UserError
from bnlab.probes.hessian_top_eig import stability_limit
from bnlab.tasks.max_lr import max_stable_lr, trial_stability

LAMBDAS = np.array([0.3, 2.0, 5.0])  # curvatures of f(x) = ½ Σ λ_i x_i²


def quadratic_trial(lam: np.ndarray, steps: int = 300, momentum: float = 0.0, divergence: float = 1e3):
    def is_stable(lr: float, seed: int) -> bool:
        x = np.random.default_rng(seed).standard_normal(lam.size)
        v = np.zeros_like(x)
        losses = []
        for _ in range(steps):
            loss = 0.5 * float(np.sum(lam * x * x))
            losses.append(loss)
            if not math.isfinite(loss) or loss > divergence * losses[0]:
                return trial_stability(losses, True)
            v = momentum * v + lam * x  # torch SGD's buffer (dampening 0)
            x = x - lr * v
        return trial_stability(losses, False)

    return is_stable


@pytest.mark.parametrize("start", [None, 0.1, 50.0, 1e-6])
def test_finds_two_over_lambda(start: float | None) -> None:
    res = max_stable_lr(quadratic_trial(LAMBDAS), seeds=(0, 1, 2), tol=0.01, start=start, steps=300)
    star = 2 / LAMBDAS.max()
    assert res.max_stable_lr < star < res.min_unstable_lr
    assert math.log10(res.min_unstable_lr / res.max_stable_lr) <= 0.01
    assert not res.censored and not res.lower_censored
    assert res.bracket == (res.max_stable_lr, res.min_unstable_lr) and res.n_seeds == 3 and res.steps == 300
    # every stable verdict was confirmed on all seeds; an unstable lr stopped at its first failing seed
    for lr in {t[0] for t in res.trials}:
        verdicts = [ok for t_lr, _, ok in res.trials if t_lr == lr]
        assert all(verdicts) == (lr < star)
        assert len(verdicts) == 3 if all(verdicts) else verdicts[-1] is False


@pytest.mark.parametrize("beta", [0.5, 0.9])
def test_heavy_ball_threshold(beta: float) -> None:
    res = max_stable_lr(quadratic_trial(LAMBDAS, steps=3000, momentum=beta), tol=0.02)
    star = stability_limit(beta) / LAMBDAS.max()
    assert res.max_stable_lr < star < res.min_unstable_lr


def test_censoring() -> None:
    top = max_stable_lr(quadratic_trial(np.array([1e-3])), hi=100.0)  # 2/λ = 2000 > hi
    assert top.censored and top.max_stable_lr == 100.0 and top.min_unstable_lr is None
    bottom = max_stable_lr(quadratic_trial(np.array([1e7])), lo=1e-6)  # 2/λ = 2e-7 < lo
    assert bottom.lower_censored and bottom.max_stable_lr is None and bottom.min_unstable_lr == 1e-6
    calls = []
    max_stable_lr(lambda lr, s: calls.append(lr) or True, iters=0)
    assert len(calls) == 2  # start, then hi


def test_iters_limits_the_trials() -> None:
    res = max_stable_lr(quadratic_trial(LAMBDAS), iters=3, tol=1e-9)
    assert len(res.trials) == 2 + 3
    assert res.max_stable_lr < 2 / LAMBDAS.max() < res.min_unstable_lr


def test_trial_stability_rule() -> None:
    assert trial_stability([3.0, 2.0, 1.0], False) and trial_stability(np.array([3.0, 2.0, 1.0]), False)
    assert not trial_stability([3.0, 2.0, 1.0], True)  # diverged
    assert not trial_stability([1.0] + [2.0] * 20, False)
    assert not trial_stability([1.0, float("nan"), 0.5], False)
    assert not trial_stability([1.0], False)
    # only the last 10 steps count: a loss that dipped early and came back up is unstable
    assert not trial_stability([5.0, 0.1, 0.1] + [6.0] * 10, False)
    assert trial_stability([5.0] + [9.0] * 5 + [1.0] * 10, False)
    # the summary form (first loss, mean of the last 10, diverged) gives the same verdicts
    assert trial_stability(3.0, 1.0, False) and not trial_stability(3.0, 1.0, True)
    assert not trial_stability(1.0, 2.0, False) and not trial_stability(None, 1.0, False)
    assert not trial_stability(1.0, float("inf"), False)


def test_bad_input() -> None:
    ok = quadratic_trial(LAMBDAS)
    for kw in (dict(lo=0.0), dict(lo=1.0, hi=0.5), dict(seeds=()), dict(start=1e3), dict(tol=0.0)):
        with pytest.raises(UserError):
            max_stable_lr(ok, **kw)
    with pytest.raises(TypeError):
        trial_stability([1.0, 0.5])
