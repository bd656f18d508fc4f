"""bnlab experiments: every spec with its run count and cost per profile."""

from __future__ import annotations

import argparse

from bnlab.cli.arguments import add_experiments_argument


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("experiments", help="list experiment specs: runs and estimated cost per profile")
    add_experiments_argument(p)
    return p


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from bnlab.analyses.spec import PROFILES, add_spec_dirs, all_specs
    from bnlab.sweeps.plan import fmt_seconds

    add_spec_dirs(args.experiments)
    t = Table(title="bnlab experiments (runs / stated cost per profile)")
    t.add_column("id")
    t.add_column("name")
    for p in PROFILES:
        t.add_column(p, justify="right")
    for s in all_specs():
        cells = []
        for p in PROFILES:
            prof = s.profile(p)
            cells.append("skip" if prof.skip else f"{len(s.configs(p))} / {fmt_seconds(prof.cost_s)}")
        t.add_row(s.id, s.name, *cells)
    Console().print(t)
    return 0
