"""bnlab compare RUNS_A RUNS_B [--out DIR]: the figures and verdicts of two runs roots (profiles, machines or
code versions) side by side in one HTML file; the last stdout line is its path."""

from __future__ import annotations

import argparse


def add_parser(sub) -> argparse.ArgumentParser:  # noqa: ANN001 (argparse's private subparsers type)
    p = sub.add_parser(
        "compare", help="two runs roots side by side: figures, numbers and verdicts in one HTML"
    )
    p.add_argument("runs_a", metavar="RUNS_A", help="first runs root")
    p.add_argument("runs_b", metavar="RUNS_B", help="second runs root")
    p.add_argument("--out", default=None, help="output folder (default: RUNS_A/compare)")
    p.add_argument("--profile-a", default=None, choices=["smoke", "cpu", "fast", "paper"])
    p.add_argument("--profile-b", default=None, choices=["smoke", "cpu", "fast", "paper"])
    p.add_argument("--only", default=None, help="comma-separated experiment ids or names (default: all)")
    return p


def _only(value: str | None) -> list[str] | None:
    return [x.strip() for x in value.split(",") if x.strip()] if value else None


def run(args: argparse.Namespace) -> int:
    from bnlab.report import build_comparison

    print(
        build_comparison(
            args.runs_a,
            args.runs_b,
            out_dir=args.out,
            profile_a=args.profile_a,
            profile_b=args.profile_b,
            only=_only(args.only),
        )
    )
    return 0
