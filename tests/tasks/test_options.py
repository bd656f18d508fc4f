"""Typed task options: a misspelt or mistyped option is one sentence; defaults are the old ones."""

import pytest

from bnlab.config import run_id, validate
from bnlab.errors import UserError
from bnlab.tasks import TASKS, check
from bnlab.tasks.diverging_task import DivergingOptions
from bnlab.tasks.max_lr_task import MaxLrOptions
from bnlab.tasks.rmt_task import RmtOptions


def test_max_lr_defaults_and_a_typo():
    opts = MaxLrOptions.parse({}, "max_lr")
    assert (opts.steps, opts.seeds, opts.lo, opts.hi, opts.iters, opts.start) == (
        100,
        [0],
        1e-6,
        100.0,
        8,
        0.1,
    )
    with pytest.raises(UserError) as e:
        MaxLrOptions.parse({"step": 300}, "max_lr")
    msg = str(e.value)
    assert "task_options.step" in msg and "steps" in msg and "\\n" not in msg
    with pytest.raises(UserError, match="task_options.steps"):
        MaxLrOptions.parse({"steps": "many"}, "max_lr")


def test_diverging_and_rmt_options():
    assert DivergingOptions.parse({"layers": [8, "conv1"], "grid": 21}, "diverging_step").layers == [
        8,
        "conv1",
    ]
    with pytest.raises(UserError, match="task_options.grids"):
        DivergingOptions.parse({"grids": 3}, "diverging_step")
    assert RmtOptions.parse({"kind": "lyapunov", "depth": 10}, "rmt").depth == 10
    with pytest.raises(UserError, match="task_options.bogus"):
        RmtOptions.parse({"kind": "lyapunov", "bogus": 1}, "rmt")
    with pytest.raises(UserError, match="choose one of"):
        RmtOptions.parse({"kind": "nope"}, "rmt")


def test_every_task_with_options_rejects_unknown_keys():
    for name in TASKS.names():
        parse = TASKS.get(name).options
        if parse is not None:
            raw = {"kind": "spectra", "zzz": 1} if name == "rmt" else {"zzz": 1}
            with pytest.raises(UserError, match="zzz"):
                parse(raw, name)


def test_check_refuses_a_typo_and_typing_keeps_the_run_id():
    raw = {"task": "max_lr", "task_options": {"steps": 20, "iters": 4}}
    cfg = validate(raw)
    assert run_id(check(cfg)) == run_id(cfg)
    assert check(cfg).task_options == {
        "steps": 20,
        "iters": 4,
    }  # kept as written: only what was set is hashed
    with pytest.raises(UserError, match="task_options.step "):
        check(validate({"task": "max_lr", "task_options": {"step": 300}}))


def test_train_ignores_task_options():
    """Specs that cross `task: [train, max_lr]` give their train runs the max_lr options (and run ids)."""
    cfg = validate({"task": "train", "task_options": {"steps": 20}})
    assert check(cfg) is cfg


def test_max_lr_trials_run_at_constant_lr_without_warmup():
    """A profile's warmup must not reach the max-lr trials: ramping a 100-step trial from 1 % of its lr made
    E1's search call 0.115 stable for a net that diverges at 0.0115 at constant lr."""
    from bnlab.config import resolve, run_id
    from bnlab.tasks.max_lr_task import trial_config

    plain = resolve(None, ["model.depth=8", "task=max_lr"])
    warm = resolve(
        None,
        ["model.depth=8", "task=max_lr", "optim.warmup.kind=linear", "optim.warmup.steps=100",
         "optim.warmup.factor=0.01", "optim.milestones=[0.75, 0.9]"],
    )  # fmt: skip
    a, b = trial_config(plain, 0.3, 0, 20), trial_config(warm, 0.3, 0, 20)
    assert b.optim.warmup.kind == "none" and b.optim.schedule == "constant" and b.optim.lr == 0.3
    # configs without warmup keep the trial ids they had (committed searches are not rerun)
    raw = plain.model_dump(mode="json")
    raw.update(task="train", task_options={}, probes=[])
    raw["optim"].update(lr=0.3, schedule="constant")
    raw["train"].update(seed=0, steps=20, epochs=None, evaluate=False, checkpoint_every=1e9)
    assert run_id(a) == run_id(validate(raw))
    from bnlab.training.schedules import lr_at  # the lr each trial step actually uses

    assert [lr_at(s, 20, b.optim) for s in (0, 10, 19)] == [0.3, 0.3, 0.3]
