"""bnlab export RUNS OUT.csv: one tidy table of all runs (config columns, state, summary); with --probe NAME,
the rows of that probe across all runs (probes/NAME.jsonl, with a run_id column)."""

from __future__ import annotations

import argparse
import sys


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("export", help="write one CSV row per run")
    p.add_argument("runs")
    p.add_argument("out")
    p.add_argument("--probe", default=None, help="export this probe's table instead (e.g. layer_stats)")
    return p


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from bnlab.errors import UserError
    from bnlab.store import load_probes, load_runs
    from bnlab.store.files import atomic_write_text

    if not Path(args.runs).is_dir():
        raise UserError(f"runs root {args.runs!r} does not exist")
    df = load_probes(args.runs, args.probe) if args.probe else load_runs(args.runs)
    if args.probe and df.empty:
        raise UserError(f"no run under {args.runs!r} has rows of probe {args.probe!r}")
    for note in df.attrs.get("skipped", []):  # e.g. a config.yaml edited after its run
        print(f"bnlab: {note}", file=sys.stderr)
    atomic_write_text(args.out, df.to_csv(index=False))
    print(args.out)
    return 0
