"""`bnlab` entry point: one small module per subcommand, each calling one library function.

A UserError anywhere becomes one sentence on stderr and exit code 2 (no traceback)."""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import NoReturn

import bnlab

# one module per subcommand in bnlab.cli, each with add_parser(subparsers) and run(args) -> int
COMMANDS = [
    "train",
    "sweep",
    "reproduce",
    "report",
    "compare",
    "experiments",
    "status",
    "export",
    "probe",
    "rmt",
    "ls",
    "data",
    "diagnose",
]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one sentence, exit 2 (argparse's own convention)
        sys.stderr.write(f"bnlab: {message} (see `{self.prog} --help`)\n")
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="bnlab", description="A laboratory for understanding normalization in deep networks."
    )
    parser.add_argument("--version", action="version", version=f"bnlab {bnlab.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for module in COMMANDS:
        try:
            mod = importlib.import_module(f"bnlab.cli.{module}")
        except ModuleNotFoundError as e:
            if e.name and e.name.startswith("bnlab.cli."):
                continue  # subcommand not built yet
            raise
        p = mod.add_parser(sub)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    from bnlab.errors import UserError

    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args._run(args) or 0)
    except UserError as e:
        sys.stderr.write(f"bnlab: {' '.join(str(e).split())}\n")  # one line, whatever the message held
        return 2
    except UnicodeDecodeError as e:  # an input file that is not text (a spec, a config elsewhere)
        sys.stderr.write(f"bnlab: an input file is not UTF-8 text ({e.reason} at byte {e.start})\n")
        return 2
    except RecursionError:  # nesting no input of bnlab has (YAML thousands of levels deep)
        sys.stderr.write("bnlab: an input nests too deep to be read\n")
        return 2
    except OSError as e:  # a write failure (disk full, permissions): the run is marked failed, results kept
        sys.stderr.write(
            f"bnlab: write failed: {e.strerror or e}{f' ({e.filename})' if e.filename else ''}\n"
        )
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("bnlab: interrupted; run the same command again to resume\n")
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
