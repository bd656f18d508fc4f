"""argparse arguments shared by several subcommands: --config, --set, --runs, --experiments, --executor."""

from __future__ import annotations

import argparse
from typing import Any


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


def add_experiments_argument(parser: argparse.ArgumentParser) -> None:
    """--experiments DIR (repeatable; a list in args.experiments, None if not given): hand it to
    bnlab.analyses.spec.add_spec_dirs before reading specs."""
    parser.add_argument(
        "--experiments",
        action="append",
        metavar="DIR",
        help="a folder of your own experiments (<ID>_<name>.yaml beside <id>_<name>.py); repeatable",
    )


def add_executor_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--executor", default="local", choices=["local", "ray", "slurm"])
    p.add_argument("--address", default=None, help="ray: cluster address (auto joins a running cluster)")
    p.add_argument(
        "--workers-per-device",
        type=int,
        default=1,
        help="local: runs in flight per GPU (or on the CPU), each in its own process (default 1)",
    )


def sweep_options(args: argparse.Namespace) -> dict[str, Any]:
    """The keywords of `bnlab.sweeps.runner.run_specs` (and `reproduce`) that `bnlab sweep` and
    `bnlab reproduce` take from their shared arguments: --set, --executor, --address, --retry-failed,
    --force, --dry-run."""
    return {
        "overrides": args.overrides,
        "executor": args.executor,
        "address": args.address,
        "workers_per_device": args.workers_per_device,
        "retry_failed": args.retry_failed,
        "force": args.force,
        "dry_run": args.dry_run,
    }
