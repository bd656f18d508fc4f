"""bnlab ls models|norms|inits|datasets|probes"""

from __future__ import annotations

import argparse


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("ls", help="list registered models, norms, inits, datasets or probes")
    p.add_argument("what", choices=["models", "norms", "inits", "datasets", "probes"])
    return p


def registry(what: str):
    if what == "models":
        from bnlab.models import MODELS as r
    elif what == "norms":
        from bnlab.nn.norms import NORMS as r
    elif what == "inits":
        from bnlab.nn.init import INITS as r
    elif what == "datasets":
        from bnlab.data import DATASETS as r
    else:
        from bnlab.probes import PROBES as r
    return r


def run(args: argparse.Namespace) -> int:
    r = registry(args.what)
    width = max((len(n) for n in r.names()), default=0)
    for name in r.names():
        doc = r.doc(name)
        print(f"{name:<{width}}  {doc}".rstrip())
    return 0
