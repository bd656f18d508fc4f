"""Run one probe on a config's model (at init, or from a checkpoint) outside training: `bnlab probe`."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from bnlab.config import Config
from bnlab.errors import UserError
from bnlab.probes.context import ProbeContext
from bnlab.probes.guard import call_probe
from bnlab.probes.registry import PROBE_KIND, PROBES
from bnlab.probes.result import ProbeResult


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
    p = Path(path)
    if not p.is_file():
        raise UserError(f"checkpoint {str(p)!r} does not exist")
    data = p.read_bytes()
    sha = p.with_suffix(".sha256")
    if sha.exists():
        from bnlab.store.rundir import sha256_bytes

        if sha256_bytes(data) != sha.read_text().strip():
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
    from bnlab.training.loop import build, resolve_device

    PROBES.get(name)  # an unknown name fails before the model is built
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


def probe_batch_seed(cfg: Config) -> int:
    """Probes see fixed minibatches: the same images at every step of a run, seeded by the run's seed."""
    return cfg.train.seed + 104729


def apply_probe(
    name: str, model: torch.nn.Module, batches: list, ctx: ProbeContext | None, options: dict[str, Any]
) -> ProbeResult:
    """Run probe `name` on `batches`: a data probe once on all of them (with `ctx`), a batch probe once per
    minibatch, its tables stacked with a `batch` column and its arrays keyed "b<i>/<key>"."""
    fn = PROBES.get(name)
    if PROBE_KIND.get(name) == "data":
        return call_probe(fn, name, model, batches, ctx=ctx or ProbeContext(), **options)
    results = [call_probe(fn, name, model, x, y, **options) for x, y in batches]
    if len(results) == 1:
        return results[0]
    import pandas as pd

    tables = []
    arrays: dict[str, Any] = {}
    for i, r in enumerate(results):
        t = r.table.copy()
        t["batch"] = i
        tables.append(t)
        arrays.update({f"b{i}/{k}": v for k, v in r.arrays.items()})
    return ProbeResult(pd.concat(tables, ignore_index=True), arrays, dict(results[0].attrs))
