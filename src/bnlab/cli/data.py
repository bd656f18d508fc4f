"""`bnlab data download NAME [--root DIR] [--force]`: fetch CIFAR-10/100 (md5-checked) into the data folder.

The folder is --root, else $BNLAB_DATA, else ~/.cache/bnlab; the last stdout line is the dataset folder.
"""

from __future__ import annotations

import argparse
import sys


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("data", help="manage datasets (download CIFAR-10/100)")
    sub = p.add_subparsers(dest="data_command", metavar="{download}")
    sub.required = True
    d = sub.add_parser("download", help="download CIFAR-10 or CIFAR-100 (md5-checked) into the data folder")
    d.add_argument("name", choices=["cifar10", "cifar100"], help="dataset to fetch")
    d.add_argument(
        "--root", default=None, help="folder to put it in (default: $BNLAB_DATA or ~/.cache/bnlab)"
    )
    d.add_argument("--force", action="store_true", help="download again even if a valid copy is there")
    return p


def _progress() -> object:
    state = {"last": -1}

    def report(done: int, total: int) -> None:
        mib = done >> 20
        if mib // 10 != state["last"]:  # one line per 10 MiB: readable in logs
            state["last"] = mib // 10
            of = f" of {total >> 20}" if total else ""
            print(f"downloaded {mib}{of} MiB", file=sys.stderr, flush=True)

    return report


def run(args: argparse.Namespace) -> int:
    from bnlab.data import download

    if getattr(args, "data_command", None) != "download":
        from bnlab.errors import UserError

        raise UserError("use `bnlab data download cifar10` (or cifar100)")
    path = download(args.name, args.root, force=args.force, progress=_progress())  # type: ignore[arg-type]
    print(path)
    return 0
