"""bnlab ls models|norms|inits|datasets|probes"""

from __future__ import annotations

import argparse
from typing import Any

from bnlab.registry import Registry


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("ls", help="list registered models, norms, inits, datasets or probes")
    p.add_argument("what", choices=["models", "norms", "inits", "datasets", "probes"])
    return p


def registry(what: str) -> Registry[Any]:
    if what == "models":
        from bnlab.models import MODELS

        return MODELS
    if what == "norms":
        from bnlab.nn.norms import NORMS

        return NORMS
    if what == "inits":
        from bnlab.nn.init import INITS

        return INITS
    if what == "datasets":
        from bnlab.data import DATASETS

        return DATASETS
    from bnlab.probes import PROBES

    return PROBES


def run(args: argparse.Namespace) -> int:
    r = registry(args.what)
    width = max((len(n) for n in r.names()), default=0)
    for name in r.names():
        doc = r.doc(name)
        print(f"{name:<{width}}  {doc}".rstrip())
    return 0
