"""bnlab status RUNS: runs by state, readable at 80 columns.

One line per run (id, state, step, model, lr, test accuracy); a reason or warning goes on the next line,
indented and wrapped. A run whose process is gone reads as `interrupted`, not `running`.
"""

from __future__ import annotations

import argparse
import textwrap

WIDTH = 80


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("status", help="show the runs under a runs root by state")
    p.add_argument("runs", help="runs root directory")
    return p


def _num(v: object, fmt: str) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return "-"
    try:
        return format(float(v), fmt)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return str(v)


def _model(r) -> str:  # noqa: ANN001 - a DataFrame row
    name = {"resnet_cifar": "resnet", "vgg_cifar": "vgg"}.get(
        str(r.get("model.name")), str(r.get("model.name"))
    )
    norm = r.get("model.norm")
    depth = r.get("model.depth")
    text = f"{name}{'' if depth is None or depth != depth else int(depth)}"
    return f"{text} {norm}" if isinstance(norm, str) else text


def lines(df) -> list[str]:  # noqa: ANN001 - load_runs' DataFrame
    """The status table as lines of at most WIDTH characters."""
    counts = df["state"].value_counts().to_dict()
    out = ["  ".join(f"{k}: {v}" for k, v in sorted(counts.items()))]
    out.append(f"{'run':<12} {'state':<11} {'step':>7}  {'model':<20} {'lr':>8} {'test acc':>8}")
    for _, r in df.sort_values(["state", "run_id"]).iterrows():
        task = r.get("task")
        model = _model(r) if task in (None, "train") or task != task else f"task {task}"
        out.append(
            f"{str(r['run_id'])[:12]:<12} {str(r['state'])[:11]:<11} {_num(r.get('step'), '.0f'):>7}  "
            f"{model[:20]:<20} {_num(r.get('optim.lr'), '.3g'):>8} {_num(r.get('summary.test_acc'), '.4f'):>8}"
        )
        reason = r.get("reason")
        if isinstance(reason, str) and reason:
            out.extend(textwrap.wrap(reason, WIDTH, initial_indent="    ", subsequent_indent="    "))
    return out


def run(args: argparse.Namespace) -> int:
    import sys
    from pathlib import Path

    from bnlab.errors import UserError
    from bnlab.store import load_runs

    if not Path(args.runs).is_dir():
        raise UserError(f"runs root {args.runs!r} does not exist")
    df = load_runs(args.runs)
    for note in df.attrs.get("skipped", []):
        sys.stderr.write(textwrap.fill(f"bnlab: {note}", WIDTH) + "\n")
    if df.empty:
        print(f"no runs under {args.runs}")
        return 0
    print("\n".join(lines(df)))
    return 0
