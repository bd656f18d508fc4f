"""bnlab report RUNS [--out DIR] [--profile P]: the self-contained HTML report (+ Markdown, figures) of a
runs root; the last stdout line is the report's path."""

from __future__ import annotations

import argparse

from bnlab.cli.arguments import add_experiments_argument


def add_parser(sub) -> argparse.ArgumentParser:  # noqa: ANN001 (argparse's private subparsers type)
    p = sub.add_parser(
        "report", help="build RUNS/report/report.html (+ report.md, figures/) from a runs root"
    )
    p.add_argument("runs", metavar="RUNS", help="runs root (the folder given to --runs)")
    p.add_argument("--out", default=None, help="output folder (default: RUNS/report)")
    p.add_argument(
        "--profile",
        default=None,
        choices=["smoke", "cpu", "fast", "paper"],
        help="which runs to report (default: the profile of reproduce.json or of most runs)",
    )
    p.add_argument(
        "--command", default=None, help="the command to show for regenerating it (default: reproduce.json's)"
    )
    p.add_argument("--only", default=None, help="comma-separated experiment ids or names (default: all)")
    p.add_argument(
        "--pages",
        action="store_true",
        help="also one folder per experiment with runs: OUT/<id>_<name>/README.md + its figures",
    )
    add_experiments_argument(p)
    return p


def _only(value: str | None) -> list[str] | None:
    return [x.strip() for x in value.split(",") if x.strip()] if value else None


def run(args: argparse.Namespace) -> int:
    from bnlab.analyses.spec import add_spec_dirs
    from bnlab.report import build_report

    add_spec_dirs(args.experiments)
    print(
        build_report(
            args.runs,
            out_dir=args.out,
            profile=args.profile,
            command=args.command,
            only=_only(args.only),
            pages=args.pages,
        )
    )
    return 0
