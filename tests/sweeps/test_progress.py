"""Sweep progress: the time left from the plan's estimates (rescaled by the runs done so far), and off a
terminal one line per run with the time left."""

from __future__ import annotations

import re

import pytest

from bnlab.analyses.spec import load_spec
from bnlab.sweeps import plan as plan_mod
from bnlab.sweeps.plan import Eta
from bnlab.sweeps.runner import run_specs


def test_eta_rescales_the_estimates_by_the_runs_done(monkeypatch: pytest.MonkeyPatch) -> None:
    now = {"t": 100.0}
    monkeypatch.setattr(plan_mod.time, "monotonic", lambda: now["t"])
    eta = Eta({"a": 10.0, "b": 20.0, "c": 30.0})
    assert eta.seconds_left() == 60.0 and eta.text() == "~60 s left"  # nothing done: the plan's estimate
    now["t"] += 20.0  # run a took twice its estimate
    eta.done("a")
    assert eta.seconds_left() == pytest.approx(100.0)  # (20 + 30) x 2
    eta.done("already-finished")  # a run finished before the sweep: no estimate, no change
    assert eta.seconds_left() == pytest.approx(100.0)
    eta.done("b")
    eta.done("c")
    assert eta.text() == "nothing left"


def test_reproduce_off_a_terminal_prints_one_line_per_run_with_time_left(tiny_spec, tmp_path, capsys) -> None:
    run_specs([load_spec(tiny_spec)], "smoke", tmp_path / "runs", measure=False)
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("run ")]
    assert len(lines) == 4, err
    for i, ln in enumerate(lines, start=1):
        assert re.match(rf"run {i}/4 \w+ complete; \d+ s elapsed, (~\d+ s left|nothing left)$", ln), ln
    assert lines[-1].endswith("nothing left")
