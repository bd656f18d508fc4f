import math

import pytest

from bnlab.config import OptimConfig
from bnlab.training.divergence import DivergenceCheck
from bnlab.training.schedules import lr_at


def test_step_schedule_milestones():
    o = OptimConfig(lr=0.1)
    assert lr_at(0, 100, o) == pytest.approx(0.1)
    assert lr_at(49, 100, o) == pytest.approx(0.1)
    assert lr_at(50, 100, o) == pytest.approx(0.01)
    assert lr_at(75, 100, o) == pytest.approx(0.001)


def test_warmup_returns_to_base_lr():
    o = OptimConfig(lr=0.1, schedule="constant", warmup={"kind": "constant", "steps": 400, "factor": 0.1})
    assert lr_at(0, 10_000, o) == pytest.approx(0.01)  # He et al.: 0.01 for ~400 steps at lr 0.1
    assert lr_at(399, 10_000, o) == pytest.approx(0.01)
    assert lr_at(400, 10_000, o) == pytest.approx(0.1)
    lin = OptimConfig(lr=0.2, schedule="step", warmup={"kind": "linear", "steps": 10, "factor": 0.0})
    assert lr_at(0, 100, lin) == 0.0
    assert lr_at(5, 100, lin) == pytest.approx(0.1)
    assert lr_at(10, 100, lin) == pytest.approx(0.2)
    # after warm-up the schedule is the one without warm-up
    plain = OptimConfig(lr=0.2, schedule="step")
    assert all(lr_at(s, 100, lin) == lr_at(s, 100, plain) for s in range(10, 100))


def test_cosine():
    o = OptimConfig(lr=1.0, schedule="cosine")
    assert lr_at(0, 10, o) == pytest.approx(1.0)
    assert lr_at(5, 10, o) == pytest.approx(0.5)
    assert lr_at(10, 10, o) == pytest.approx(0.0, abs=1e-12)


def test_divergence_relative_and_absolute():
    rel = DivergenceCheck("relative", 1e3)
    assert rel.check(2.3) is None and rel.reference == 2.3
    assert rel.check(2.3e3 - 1) is None
    assert "x first loss" in rel.check(2.3e3 + 1)
    ab = DivergenceCheck("absolute", 1e3)
    assert ab.check(1500.0) is not None  # even the first step
    assert ab.check(999.0) is None
    for mode in ("relative", "absolute"):
        d = DivergenceCheck(mode, 1e3)
        assert "non-finite" in d.check(math.nan)
        assert "non-finite" in d.check(math.inf)
