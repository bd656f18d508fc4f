"""bnlab probe NAME [--config F] [--set ...] [--batches N] [--layers 55,conv1] [--checkpoint F] --out FILE.{csv,json} [--plot FILE.png]"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bnlab.cli.arguments import add_config_args

if TYPE_CHECKING:
    import torch

    from bnlab.config import Config
    from bnlab.probes.result import ProbeResult


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "probe", help="run one probe on a configured model (at init or from a checkpoint)", add_help=False
    )
    p.add_argument("-h", "--help", action=ProbeHelp, help="show this help (with NAME: that probe's options)")
    p.add_argument("name", help="probe name (bnlab ls probes); `bnlab probe NAME --help` lists its options")
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
        help="a probe option (values are YAML), e.g. --option per_example=batch",
    )
    p.add_argument("--out", required=True, help="FILE.csv or FILE.json for the table")
    p.add_argument("--plot", default=None, help="FILE.png: a plot of every metric per layer")
    return p


def run(args: argparse.Namespace) -> int:
    from bnlab.config import parse_override, resolve
    from bnlab.errors import UserError
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


class ProbeHelp(argparse.Action):
    """--help: the command's help, then (when NAME came first) that probe's options from its signature."""

    def __init__(self, option_strings: list[str], dest: str, **kw: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kw)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, *_: Any) -> None:
        parser.print_help()
        name = getattr(namespace, "name", None)
        if name:
            from bnlab.errors import UserError

            try:
                print("\n" + probe_options_help(name))
            except UserError as e:
                print(f"\n{e}")
        parser.exit()


def probe_options_help(name: str) -> str:
    """Probe `name`'s options (pass them as --option KEY=VALUE): name, type and default from its signature,
    then its docstring."""
    import inspect
    import textwrap

    from bnlab.probes.registry import PROBE_KIND, PROBES

    fn = PROBES.get(unknown_probe_hint(name))
    sig = inspect.signature(fn)
    lines = [
        f"{name} ({PROBE_KIND.get(name, 'batch')} probe): {PROBES.doc(name)}",
        "",
        "options (--option KEY=VALUE):",
    ]
    fixed = {"model", "inputs", "targets", "batches", "ctx", "loss_fn"}
    for p in sig.parameters.values():
        if p.name in fixed or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        ann = (
            p.annotation
            if isinstance(p.annotation, str)
            else getattr(p.annotation, "__name__", str(p.annotation))
        )
        default = "required" if p.default is p.empty else f"default {p.default!r}"
        lines.append(f"  {p.name:<16} {ann}  ({default})")
    if name in ("activation_moments",):
        lines.append("  (--layers sets modules=)")
    doc = inspect.cleandoc(fn.__doc__ or "")
    return "\n".join(lines) + "\n\n" + textwrap.indent(doc, "  ") + "\n"


def unknown_probe_hint(name: str) -> str:
    """`name` when it is a probe; for an experiment's name or id, a UserError naming the probes it uses."""
    from bnlab.errors import UserError
    from bnlab.probes.registry import PROBES

    if name in PROBES:
        return name
    try:
        from bnlab.analyses.spec import all_specs

        for spec in all_specs():
            if name.lower() in (spec.id.lower(), spec.name.lower()):
                text = json.dumps(spec.model_dump(mode="json"))
                used = [p for p in PROBES.names() if f'"name": "{p}"' in text or f"name: {p}" in text]
                raise UserError(
                    f"{name!r} is experiment {spec.id}, not a probe"
                    + (f"; it measures with: {', '.join(used)}" if used else "")
                    + f"; probes: {', '.join(PROBES.names())}"
                )
    except UserError:
        raise
    except Exception:  # noqa: BLE001 - no specs found: fall back to the registry's own error
        pass
    PROBES.get(name)
    return name


def parse_layers(text: str | None) -> list[str | int] | None:
    """ "55,conv1,layer2.0.conv1" -> [55, "conv1", "layer2.0.conv1"] (numbers are paper layers)."""
    if not text:
        return None
    out: list[str | int] = []
    for item in text.split(","):
        item = item.strip()
        if item:
            out.append(int(item) if item.isdigit() else item)
    return out


def load_weights(model: torch.nn.Module, path: str | Path) -> None:
    """A bnlab checkpoint (checksum verified when its .sha256 is beside it) or a plain state dict;
    always through torch.load(weights_only=True)."""
    import torch

    from bnlab.errors import UserError

    p = Path(path)
    if not p.is_file():
        raise UserError(f"checkpoint {str(p)!r} does not exist")
    data = p.read_bytes()
    sha = p.with_suffix(".sha256")
    if sha.exists() and hashlib.sha256(data).hexdigest() != sha.read_text().strip():
        raise UserError(f"checkpoint {str(p)!r} failed its checksum (corrupt or truncated)")
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001
        raise UserError(f"checkpoint {str(p)!r} could not be loaded safely ({type(e).__name__})") from None
    sd = state.get("model", state) if isinstance(state, dict) else state
    try:
        model.load_state_dict(sd)
    except (RuntimeError, TypeError) as e:
        raise UserError(
            f"checkpoint {str(p)!r} does not match the configured model ({str(e).splitlines()[0][:120]})"
        ) from None


def run_probe(
    cfg: Config,
    name: str,
    *,
    batches: int = 1,
    batch_size: int | None = None,
    layers: list[str | int] | None = None,
    checkpoint: str | None = None,
    options: dict[str, Any] | None = None,
) -> ProbeResult:
    """Build the config's model (at init, or with a checkpoint's weights), draw its fixed probe minibatches
    and apply probe `name` (data probes get an optimizer built from the config)."""
    from bnlab.probes.context import ProbeContext
    from bnlab.probes.registry import PROBE_KIND
    from bnlab.probes.runner import apply_probe, probe_batch_seed
    from bnlab.training.loop import build, resolve_device

    unknown_probe_hint(name)  # an unknown name fails before the model is built
    device = resolve_device(cfg.train.device)
    model, _, dd = build(cfg, device)
    if checkpoint:
        load_weights(model, checkpoint)
        model.to(device)
    opts = dict(options or {})
    if layers is not None:
        opts["modules" if name == "activation_moments" else "layers"] = layers
    data = dd.probe_batches(batches, batch_size or cfg.optim.batch_size, seed=probe_batch_seed(cfg))
    ctx = None
    if PROBE_KIND.get(name) == "data":
        from bnlab.training.optim import make_optimizer

        ctx = ProbeContext(step=0, optimizer=make_optimizer(model, cfg.optim), lr=cfg.optim.lr, config=cfg)
    return apply_probe(name, model, data, ctx, opts)
