"""bnlab reproduce [--profile smoke|cpu|fast|paper] [--only E1,E8,lr_study] [--executor local|ray|slurm] [--runs DIR] [--set ...]"""

from __future__ import annotations

import argparse

from bnlab.cli.arguments import add_executor_args, add_experiments_argument, add_set_arg, sweep_options


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "reproduce", help="run the whole study (or --only some experiments) and build the report"
    )
    p.add_argument("--profile", default="smoke", choices=["smoke", "cpu", "fast", "paper"])
    p.add_argument("--only", default=None, help="comma-separated experiment ids or names (E1,E8,lr_study)")
    add_executor_args(p)
    p.add_argument("--runs", default="runs", help="runs root (default: runs)")
    add_set_arg(p)
    p.add_argument("--retry-failed", action="store_true")
    p.add_argument("--force", action="store_true")
    p.add_argument("--dry-run", action="store_true", help="print the plan only")
    add_experiments_argument(p)
    return p


def run(args: argparse.Namespace) -> int:
    from bnlab.analyses.spec import add_spec_dirs
    from bnlab.sweeps.reproduce import reproduce

    add_spec_dirs(args.experiments)

    only = [s.strip() for s in args.only.split(",") if s.strip()] if args.only else None
    path = reproduce(
        args.profile,
        only,
        args.runs,
        **sweep_options(args),
    )
    if path is not None:
        print(path)
    return 0
