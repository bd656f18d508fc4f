"""bnlab experiments: every spec with its run count and cost per profile."""

from __future__ import annotations

import argparse
import sys

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
    totals = stated_totals()
    for s in all_specs():
        cells = []
        for p in PROFILES:
            prof = s.profile(p)
            cells.append("skip" if prof.skip else f"{len(s.configs(p))} / {fmt_seconds(prof.cost_s)}")
        t.add_row(s.id, s.name, *cells)
    t.add_section()
    t.add_row("total", "stated cost", *(fmt_seconds(totals[p]) for p in PROFILES))
    # off a terminal (a pipe, a file) nothing is cut to fit 80 columns: the table takes the width it needs
    Console(width=None if sys.stdout.isatty() else 1000).print(t)
    return 0


def stated_totals() -> dict[str, float]:
    """The sum of the specs' stated costs (seconds) per profile, skipped experiments left out: the
    `total` row of `bnlab experiments`."""
    from bnlab.analyses.spec import PROFILES, all_specs

    out = dict.fromkeys(PROFILES, 0.0)
    for s in all_specs():
        for p in PROFILES:
            prof = s.profile(p)
            out[p] += 0.0 if prof.skip else prof.cost_s
    return out
