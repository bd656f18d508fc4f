"""bnlab diagnose TARGET [--data cifar10 | --npz FILE] [--out PAGE.html]: bnlab's init diagnostics on your
model (TARGET = module:function returning an nn.Module; module may be a .py path) beside bnlab's BN and
no-BN ResNet-20 references, as one self-contained HTML page; the last stdout line is its path."""

from __future__ import annotations

import argparse


def add_parser(sub) -> argparse.ArgumentParser:  # noqa: ANN001 (argparse's private subparsers type)
    p = sub.add_parser("diagnose", help="init diagnostics of your model beside bnlab's BN / no-BN references")
    p.add_argument(
        "target", metavar="TARGET", help="module:function (or path/to/file.py:function) returning a model"
    )
    p.add_argument("--data", default="cifar10", help="a bnlab dataset (default cifar10)")
    p.add_argument("--data-root", default=None, help="where the dataset lies (default: bnlab's search path)")
    p.add_argument(
        "--npz", default=None, help="your arrays instead: an .npz with x (N,C,H,W or N,H,W,C) and y"
    )
    p.add_argument("--batch-size", type=int, default=64, help="images in the measured minibatch (default 64)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="diagnose.html", help="the page to write (default diagnose.html)")
    return p


def run(args: argparse.Namespace) -> int:
    from bnlab.report.diagnose import diagnose
    from bnlab.report.diagnose_data import load_batch, load_target

    model = load_target(args.target)
    x, y = load_batch(args.data, args.data_root, args.npz, args.batch_size, args.seed)
    path = diagnose(model, [(x, y)]).write_html(args.out, title=f"bnlab diagnose {args.target}")
    print(path)
    return 0
