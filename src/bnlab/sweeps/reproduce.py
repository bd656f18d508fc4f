"""`bnlab reproduce`: every spec (or the named ones) under a profile, then the report."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from bnlab.analyses.spec import find_specs
from bnlab.store.files import atomic_write_json, read_json
from bnlab.sweeps.runner import run_specs


def reproduce(
    profile: str = "smoke",
    only: list[str] | None = None,
    runs_root: str | Path = "runs",
    *,
    overrides: list[str] | None = None,
    executor: str = "local",
    address: str | None = None,
    workers_per_device: int = 1,
    retry_failed: bool = False,
    force: bool = False,
    dry_run: bool = False,
    command: str | None = None,
) -> Path | None:
    """Run the study under `profile` into `runs_root` and build `runs_root/report/report.html`; returns its path."""
    specs = find_specs(only)
    root = Path(runs_root)
    if not dry_run:
        ensure_data(specs, profile, overrides or [])
        root.mkdir(parents=True, exist_ok=True)
        cmd = command or " ".join(["bnlab", *map(shlex.quote, sys.argv[1:])])
        prev = read_json(root / "reproduce.json", {}) or {}
        atomic_write_json(
            root / "reproduce.json",
            {
                "profile": profile,
                "specs": sorted({*prev.get("specs", []), *(s.id for s in specs)})
                if prev.get("profile") == profile
                else [s.id for s in specs],
                "command": cmd,
                "overrides": overrides or [],
                "executor": executor,
            },
        )
    run_specs(
        specs,
        profile,
        root,
        overrides=overrides,
        executor=executor,
        address=address,
        workers_per_device=workers_per_device,
        retry_failed=retry_failed,
        force=force,
        dry_run=dry_run,
    )
    if dry_run:
        return None
    from bnlab.report import build_report

    return build_report(root, profile=profile)


def ensure_data(specs, profile: str, overrides: list[str]) -> None:
    """Every dataset the runs need is found, or downloaded once before anything runs (on a machine
    without internet: a UserError that names the fix)."""
    from bnlab.data import locate_or_download

    needed = {
        (c.data.name, c.data.root)
        for s in specs
        for c in s.configs(profile, overrides)
        if c.data.name in ("cifar10", "cifar100")
    }
    for name, data_root in sorted(needed, key=str):
        locate_or_download(name, data_root)
