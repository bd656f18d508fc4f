"""Run experiment specs under a profile: expand to runs, print the plan, execute, record membership."""

from __future__ import annotations

import sys
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from bnlab.analyses.spec import Spec
from bnlab.config import Config, run_id
from bnlab.errors import UserError
from bnlab.sweeps.local import retire_membership
from bnlab.sweeps.plan import Eta, estimate_run_seconds, fmt_seconds
from bnlab.tasks import check, is_done


def expand(specs: list[Spec], profile: str, overrides: list[str] | None = None) -> list[tuple[Spec, Config]]:
    """(spec, config) for every run of `specs` under `profile`; each config checked to run (registry
    names, typed task options: a misspelt `--set task_options.x=` is a UserError before anything runs)."""
    out = []
    for s in specs:
        for cfg in s.configs(profile, overrides):
            try:
                check(cfg)
            except UserError as e:
                raise UserError(f"experiment {s.id} ({s.name}), profile {profile}: {e}") from None
            out.append((s, cfg))
    return out


def plan_text(
    pairs: list[tuple[Spec, Config]], profile: str, runs_root: Path, measure: bool = True
) -> tuple[str, float]:
    text, total_s, _ = plan(pairs, profile, runs_root, measure)
    return text, total_s


def plan(
    pairs: list[tuple[Spec, Config]], profile: str, runs_root: Path, measure: bool = True
) -> tuple[str, float, dict[str, float]]:
    """The plan's text, its estimated seconds, and the estimate of each run still to do (by run id): measured
    on this machine where it can be, else the spec's stated cost shared over its runs."""
    lines = [f"plan: profile {profile}, runs root {runs_root}"]
    total_s = 0.0
    per_run: dict[str, float] = {}
    by_spec: dict[str, list[Config]] = {}
    specs: dict[str, Spec] = {}
    for s, c in pairs:
        by_spec.setdefault(s.id, []).append(c)
        specs[s.id] = s
    for sid, cfgs in by_spec.items():
        s = specs[sid]
        done = sum(is_done(c, runs_root / run_id(c)) for c in cfgs)
        todo = [c for c in cfgs if not is_done(c, runs_root / run_id(c))]
        est = None
        per: list[float | None] = [None] * len(todo)
        if measure and todo:
            per = [estimate_run_seconds(c) for c in todo]
            est = sum(p for p in per if p is not None) if all(p is not None for p in per) else None
        if est is None:
            prof_cost = s.profile(profile).cost_s
            est = prof_cost * len(todo) / max(len(cfgs), 1)
            per = [prof_cost / max(len(cfgs), 1)] * len(todo)
        for c, p in zip(todo, per):
            per_run.setdefault(run_id(c), float(p or 0.0))
        total_s += est
        lines.append(f"  {sid:<5} {s.name:<22} {len(cfgs):>3} runs ({done} finished)  ~{fmt_seconds(est)}")
    unique = len({run_id(c) for _, c in pairs})
    lines.append(f"  total: {unique} runs, estimated {fmt_seconds(total_s)} on this machine")
    return "\n".join(lines), total_s, per_run


def run_specs(
    specs: list[Spec],
    profile: str,
    runs_root: str | Path,
    *,
    overrides: list[str] | None = None,
    executor: str = "local",
    address: str | None = None,
    workers_per_device: int = 1,
    retry_failed: bool = False,
    force: bool = False,
    dry_run: bool = False,
    measure: bool = True,
):
    from bnlab.sweeps import get_executor

    root = Path(runs_root)
    if workers_per_device != 1 and executor != "local":
        raise UserError("--workers-per-device is for the local executor only")
    pairs = expand(specs, profile, overrides)
    console = Console(stderr=True)
    text, _, estimates = plan(pairs, profile, root, measure=measure)
    console.print(text, highlight=False)
    if dry_run:
        return None
    # one config per run id, tagged with every experiment that uses it
    configs: dict[str, Config] = {}
    tags: dict[str, list[str]] = {}
    for s, c in pairs:
        rid = run_id(c)
        configs.setdefault(rid, c)
        tags.setdefault(rid, []).append(f"{s.id}/{profile}")
    ordered = list(configs)
    planned: dict[str, set[str]] = {}
    for rid, ts in tags.items():
        for t in ts:
            planned.setdefault(t, set()).add(rid)
    for tag, ids in retire_membership(root, planned).items():
        shown = ", ".join(ids[:4]) + (", …" if len(ids) > 4 else "")
        console.print(
            f"{tag}: {len(ids)} run(s) of an earlier plan ({shown}) are no longer part of it: kept on disk, "
            "left out of its report (meta.json 'superseded')",
            highlight=False,
        )
    run = get_executor(executor)
    eta = Eta(estimates)
    with Progress(
        TextColumn("[bold]runs"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[last]}"),
        TimeElapsedColumn(),
        TextColumn("{task.fields[eta]}"),
        console=console,
        disable=not sys.stderr.isatty(),
    ) as bar:
        task = bar.add_task("runs", total=len(ordered), last="", eta=eta.text())
        finished = {"n": 0}

        def on_done(rid: str, state: str) -> None:
            finished["n"] += 1
            eta.done(rid)
            bar.update(task, completed=finished["n"], last=f"{rid} {state}", eta=eta.text())
            if not sys.stderr.isatty():  # one line per run, with the time left
                console.print(
                    f"run {finished['n']}/{len(ordered)} {rid} {state}; {fmt_seconds(eta.elapsed())} elapsed, "
                    f"{eta.text()}",
                    highlight=False,
                )

        result = run(
            [configs[r] for r in ordered],
            root,
            retry_failed=retry_failed,
            force=force,
            on_done=on_done,
            tags=[tags[r] for r in ordered],
            address=address,
            **({"workers_per_device": workers_per_device} if executor == "local" else {}),
        )
    states: dict[str, int] = {}
    for st in result.states.values():
        states[st] = states.get(st, 0) + 1
    console.print(
        "sweep finished: "
        + ", ".join(f"{k} {v}" for k, v in sorted(states.items()))
        + f" ({len(result.skipped)} already done)",
        highlight=False,
    )
    return result
