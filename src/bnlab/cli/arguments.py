"""argparse arguments shared by several subcommands: --config, --set, --runs."""

from __future__ import annotations

import argparse


def add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML config file (sections model, data, optim, train, probes)")
    add_set_arg(p)


def add_set_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set optim.lr=0.01 (repeatable; values are YAML)",
    )


def add_runs_arg(p: argparse.ArgumentParser, default: str = "runs") -> None:
    p.add_argument("--runs", default=default, help=f"runs root directory (default: {default})")
