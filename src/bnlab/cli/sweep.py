"""bnlab sweep SPEC|ID [--profile P] [--set k=v ...] [--runs DIR] [--retry-failed] [--force]"""

from __future__ import annotations

import argparse

from bnlab.cli.arguments import (
    add_executor_args,
    add_experiments_argument,
    add_runs_arg,
    add_set_arg,
    sweep_options,
)


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "sweep", help="expand an experiment's grid and run it (skips finished runs, resumes others)"
    )
    p.add_argument("spec", help="experiment id (E1), name (lr_study) or a spec YAML file")
    p.add_argument("--profile", default="smoke", help="smoke | cpu | fast | paper (default smoke)")
    add_set_arg(p)
    add_runs_arg(p)
    add_executor_args(p)
    p.add_argument("--retry-failed", action="store_true", help="run failed runs again")
    p.add_argument("--force", action="store_true", help="re-run finished runs too")
    p.add_argument("--dry-run", action="store_true", help="print the plan only")
    add_experiments_argument(p)
    return p


def run(args: argparse.Namespace) -> int:
    from bnlab.analyses.spec import add_spec_dirs, find_specs
    from bnlab.sweeps.runner import run_specs

    add_spec_dirs(args.experiments)

    specs = find_specs([args.spec])
    run_specs(
        specs,
        args.profile,
        args.runs,
        **sweep_options(args),
    )
    print(args.runs)
    return 0
