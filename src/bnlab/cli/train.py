"""bnlab train [--config F] [--set k=v ...] [--runs DIR] [--dry-run]"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bnlab.cli.arguments import add_config_args, add_runs_arg


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "train",
        help="run one configuration's task (train, max_lr, diverging_step, rmt; resumes if interrupted)",
    )
    add_config_args(p)
    add_runs_arg(p)
    p.add_argument(
        "--dry-run", action="store_true", help="print the resolved config and run id, train nothing"
    )
    p.add_argument("--quiet", action="store_true", help="no progress output")
    return p


def run(args: argparse.Namespace) -> int:
    from bnlab.config import run_id, to_yaml
    from bnlab.errors import UserError
    from bnlab.store import RunDir, RunLock
    from bnlab.tasks import TASKS, is_done, resolve

    cfg = resolve(args.config, args.overrides)
    run_dir = Path(args.runs) / run_id(cfg)
    if args.dry_run:
        sys.stdout.write(to_yaml(cfg))
        print(f"# run id {run_id(cfg)}")
        return 0
    if is_done(cfg, run_dir):
        sys.stderr.write(f"bnlab: {run_dir} is already {RunDir(run_dir).state()}; nothing to do\n")
        print(run_dir)
        return 0
    lock = RunLock(run_dir)
    existed = run_dir.exists()
    if not lock.acquire():
        raise UserError(f"run {run_dir} is being trained by another live process (lock file {lock.path})")
    try:
        # the configured task (a max_lr search, a diverging-step scan, ...), not always a training
        TASKS.get(cfg.task).run(cfg, run_dir, progress=not args.quiet)
        status = RunDir(run_dir).status()
    except UserError:
        lock.release()
        if not existed:  # refused before anything was written: leave no empty run directory behind
            for name in ("lock", "lock.guard"):
                (run_dir / name).unlink(missing_ok=True)
            if run_dir.is_dir() and not any(run_dir.iterdir()):
                run_dir.rmdir()
        raise
    except KeyboardInterrupt:
        # the trainer recorded what a rerun does ("no checkpoint yet: ..." / "resumes from step N")
        reason = RunDir(run_dir).recorded_status().get("reason") or "interrupted"
        sys.stderr.write(f"bnlab: {reason}\n")
        return 130
    finally:
        lock.release()
    sys.stderr.write(
        f"bnlab: run {run_dir.name} {status['state']}"
        + (f" ({status['reason']})" if status.get("reason") else "")
        + "\n"
    )
    print(run_dir)
    return 0
