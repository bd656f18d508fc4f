"""bnlab probe NAME [--config F] [--set ...] [--batches N] [--layers 55,conv1] [--checkpoint F] --out FILE.{csv,json} [--plot FILE.png]"""

from __future__ import annotations

import argparse
import json

from bnlab.cli.arguments import add_config_args


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("probe", help="run one probe on a configured model (at init or from a checkpoint)")
    p.add_argument("name", help="probe name (bnlab ls probes)")
    add_config_args(p)
    p.add_argument("--batches", type=int, default=1, help="minibatches to probe (default 1)")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--layers", default=None, help="comma-separated module names or paper layer numbers")
    p.add_argument(
        "--checkpoint", default=None, help="a bnlab checkpoint or state dict (loaded weights-only)"
    )
    p.add_argument(
        "--option",
        dest="options",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a probe option (values are YAML), e.g. --option per_example=coupled",
    )
    p.add_argument("--out", required=True, help="FILE.csv or FILE.json for the table")
    p.add_argument("--plot", default=None, help="FILE.png: a plot of every metric per layer")
    return p


def run(args: argparse.Namespace) -> int:
    from bnlab.config import parse_override, resolve
    from bnlab.errors import UserError
    from bnlab.probes.runner import parse_layers, run_probe
    from bnlab.store.files import atomic_write_text

    if not args.out.endswith((".csv", ".json")):
        raise UserError(f"--out {args.out!r} must end in .csv or .json")
    if args.batches < 1:
        raise UserError("--batches must be >= 1")
    cfg = resolve(args.config, args.overrides)
    options = {}
    for item in args.options:
        keys, value = parse_override(item)
        options[".".join(keys)] = value
    try:
        layers = parse_layers(args.layers)
    except ValueError:
        raise UserError(
            f"--layers {args.layers!r} is not a comma-separated list of names or numbers"
        ) from None
    result = run_probe(
        cfg,
        args.name,
        batches=args.batches,
        batch_size=args.batch_size,
        layers=layers,
        checkpoint=args.checkpoint,
        options=options,
    )
    table = result.table
    if args.out.endswith(".csv"):
        atomic_write_text(args.out, table.to_csv(index=False))
    else:
        atomic_write_text(
            args.out,
            json.dumps(
                {
                    "attrs": {
                        k: v for k, v in result.attrs.items() if isinstance(v, str | int | float | bool)
                    },
                    "rows": json.loads(table.to_json(orient="records")),
                },
                indent=1,
            ),
        )
    if args.plot:
        from bnlab.figures.generic import metrics_by_layer

        fig = metrics_by_layer(table, title=f"{args.name}")
        fig.savefig(args.plot, dpi=120)
    print(args.out)
    return 0
