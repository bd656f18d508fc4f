"""Task `max_lr`: the largest stable learning rate of a configuration (E11a, E11b, E12a, E12c, E12d).

Each trial (lr, seed) is an ordinary training run of K steps at constant lr, in
`run_dir/trials/<trial id>/`: resumable, and never repeated — the bisection is deterministic given the
trial outcomes, so an interrupted search replays its finished trials from disk.

task_options: MaxLrOptions below. Each trial's summary holds its first loss and the mean of its last 10
(the trainer's LossWindow observer); `trial_stability` turns them into stable / unstable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field

from bnlab.config import Config, WarmupConfig, run_id, to_yaml, validate
from bnlab.probes.result import ProbeResult
from bnlab.store import RunDir, write_probe
from bnlab.store.files import atomic_write_json, atomic_write_text, read_json
from bnlab.tasks.max_lr import max_stable_lr, trial_stability
from bnlab.tasks.options import TaskOptions


class MaxLrOptions(TaskOptions):
    steps: int = Field(100, ge=1)  # K: optimizer steps per trial, at constant lr
    seeds: list[int] = Field(default_factory=lambda: [0])  # an lr is stable only if stable for every seed
    lo: float = Field(1e-6, gt=0)  # the lr range searched
    hi: float = Field(100.0, gt=0)
    iters: int = Field(8, ge=0)  # bisection steps in log space
    start: float = Field(0.1, gt=0)  # the first lr tried


def trial_config(cfg: Config, lr: float, seed: int, steps: int) -> Config:
    raw = cfg.model_dump(mode="json")
    raw["task"] = "train"
    raw["task_options"] = {}
    # constant means constant: no warmup either (a profile's warmup ramped a 100-step trial from 1 % of its
    # lr, and E1's search then called 0.115 stable for a net that diverges at 0.0115 without it)
    raw["optim"].update(lr=lr, schedule="constant", warmup=WarmupConfig().model_dump(mode="json"))
    raw["train"].update(seed=seed, steps=steps, epochs=None, evaluate=False, checkpoint_every=1e9)
    raw["probes"] = []
    return validate(raw)


def write_env(rd: RunDir, cfg: Config) -> None:
    """env.json of the search (its trials write their own), as a training run writes it."""
    import torch

    from bnlab.store.rundir import environment
    from bnlab.training.loop import resolve_device

    device = str(resolve_device(cfg.train.device))
    atomic_write_json(
        rd.path / "env.json", environment(device, torch.get_num_threads(), cfg.train.deterministic)
    )


def run_task(cfg: Config, run_dir: str | Path, progress: bool = False) -> dict[str, Any]:
    from bnlab.training import run as train_run

    opts = MaxLrOptions.parse(cfg.task_options, cfg.task)
    rd = RunDir(run_dir)
    rd.path.mkdir(parents=True, exist_ok=True)
    atomic_write_text(rd.config, to_yaml(cfg))
    write_env(rd, cfg)
    rd.set_status("running", 0)
    steps, seeds = opts.steps, tuple(opts.seeds)
    trials: list[dict[str, Any]] = []

    def is_stable(lr: float, seed: int) -> bool:
        tcfg = trial_config(cfg, lr, seed, steps)
        tdir = rd.path / "trials" / run_id(tcfg)
        status = train_run(tcfg, tdir, progress=False)
        summary = read_json(tdir / "summary.json", {}) or {}
        diverged = status["state"] == "diverged"
        first, last = summary.get("first_loss"), summary.get("last10_loss")
        ok = trial_stability(first, last, diverged)
        trials.append(
            {
                "lr": lr,
                "seed": seed,
                "stable": ok,
                "state": status["state"],
                "step": status["step"],
                "first_loss": first,
                "last10_loss": last,
            }
        )
        return ok

    res = max_stable_lr(
        is_stable,
        lo=opts.lo,
        hi=opts.hi,
        seeds=seeds,
        iters=opts.iters,
        start=opts.start,
    )
    rows: list[dict[str, Any]] = [
        {"probe": "max_stable_lr", "layer": "model", "metric": "max_stable_lr", "value": res.max_stable_lr},
        {
            "probe": "max_stable_lr",
            "layer": "model",
            "metric": "min_unstable_lr",
            "value": res.min_unstable_lr,
        },
        {"probe": "max_stable_lr", "layer": "model", "metric": "censored", "value": float(res.censored)},
        {"probe": "max_stable_lr", "layer": "model", "metric": "steps", "value": float(steps)},
        {"probe": "max_stable_lr", "layer": "model", "metric": "seeds", "value": float(len(seeds))},
    ]
    write_probe(rd.path, "max_stable_lr", ProbeResult.from_rows(rows, norm_stats="batch"), step=0)
    write_probe(
        rd.path,
        "max_lr_trials",
        ProbeResult.from_rows(
            [
                {
                    "probe": "max_lr_trials",
                    "layer": "model",
                    "metric": "stable",
                    "value": float(t["stable"]),
                    "lr": t["lr"],
                    "seed": t["seed"],
                    "state": t["state"],
                    "fired_step": t["step"],
                }
                for t in trials
            ]
        ),
        step=0,
    )
    atomic_write_json(
        rd.summary,
        {
            "max_stable_lr": res.max_stable_lr,
            "min_unstable_lr": res.min_unstable_lr,
            "censored": res.censored,
            "steps": steps,
            "seeds": list(seeds),
            "trials": len(trials),
        },
    )
    rd.set_status("complete", 0)
    return rd.status()
