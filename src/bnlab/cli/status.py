"""bnlab status RUNS: runs by state."""

from __future__ import annotations

import argparse


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("status", help="show the runs under a runs root by state")
    p.add_argument("runs", help="runs root directory")
    return p


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from rich.console import Console
    from rich.table import Table

    from bnlab.errors import UserError
    from bnlab.store import load_runs

    if not Path(args.runs).is_dir():
        raise UserError(f"runs root {args.runs!r} does not exist")
    df = load_runs(args.runs)
    con = Console()
    if df.empty:
        con.print(f"no runs under {args.runs}")
        return 0
    counts = df["state"].value_counts().to_dict()
    con.print("  ".join(f"{k}: {v}" for k, v in sorted(counts.items())))
    t = Table()
    for c in (
        "run_id",
        "state",
        "step",
        "model.depth",
        "model.norm",
        "optim.lr",
        "summary.test_acc",
        "reason",
    ):
        t.add_column(c)
    for _, r in df.sort_values(["state", "run_id"]).iterrows():
        vals = []
        for c in (
            "run_id",
            "state",
            "step",
            "model.depth",
            "model.norm",
            "optim.lr",
            "summary.test_acc",
            "reason",
        ):
            v = r.get(c)
            vals.append(
                ""
                if v is None or (isinstance(v, float) and v != v)
                else (f"{v:.4f}" if isinstance(v, float) else str(v))
            )
        t.add_row(*vals)
    con.print(t)
    return 0
