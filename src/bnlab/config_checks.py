"""The rules of `bnlab.config` that need no registry: value ranges and size limits (each says why), finite
numbers everywhere, and YAML that is safe to load (bounded nesting, no alias bombs, UTF-8).

`bnlab.config` keeps the models, `validate` and `resolve`; its validators call the functions here. This
module imports nothing from bnlab but `bnlab.errors` (config imports nothing above it).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import yaml

from bnlab.errors import UserError

# Size limits: a config past these would run out of memory or never finish on any machine bnlab targets.
MAX_DEPTH = 1202  # He et al.'s deepest CIFAR ResNet (ResNet-1202); deeper nets do not build in useful time
MAX_CHANNELS = 2048  # widest layer: resnet_cifar 64 x width, vgg_cifar 512 x width (WRN-28-10 has 640)
BASE_WIDEST = {"resnet_cifar": 64, "vgg_cifar": 512}
MAX_HIDDEN = 65536  # mlp hidden units
MAX_BATCH = 65536  # larger than the train split of any dataset bnlab reads (CIFAR: 50,000)
MAX_IMAGES = 10_000_000  # data.subset / val_size: beyond every dataset bnlab reads
MAX_SYNTHETIC = 100_000  # synthetic images per split: 1.2 GB of float32 32x32x3 at this size
MAX_STEPS = 10**9
MAX_EPOCHS = 10**6
MAX_PROBE_BATCHES = 10_000
# torch.compile modes train.compile accepts besides true/false (reduce-overhead: CUDA graphs)
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
SEED_LIMIT = 2**63  # torch.manual_seed takes a signed 64-bit integer
MAX_THREADS = 1024
DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d{1,3})?)$")

# YAML limits: a config is a few kilobytes of shallow mappings
MAX_YAML_BYTES = 1_000_000
MAX_YAML_DEPTH = 64
MAX_NODES = 100_000  # after expanding aliases: a "billion laughs" file expands past this


def positive(v: float | int, what: str) -> Any:
    if not v > 0:
        raise ValueError(f"{what} must be positive, got {v}")
    return v


def at_least(v: int, low: int, what: str) -> int:
    if v < low:
        raise ValueError(f"{what} must be >= {low}, got {v}")
    return v


def at_most(v: Any, high: int, what: str, why: str) -> Any:
    if v is not None and v > high:
        raise ValueError(f"{what} must be at most {high} ({why}), got {v}")
    return v


def check_model(m: Any) -> None:
    """ModelConfig's rules: ResNet depth 6n+2 and the size limits (per-field rules: `bnlab.config`)."""
    at_most(m.depth, MAX_DEPTH, "depth", "the deepest CIFAR ResNet of He et al. is 1202 layers")
    if m.name == "resnet_cifar" and (m.depth - 2) % 6 != 0:
        raise ValueError(f"resnet_cifar depth must be 6n+2 (8, 14, 20, 32, 56, 110, ...), got {m.depth}")
    if m.width < 1 or m.hidden < 1:
        raise ValueError("width and hidden must be >= 1")
    base = BASE_WIDEST.get(m.name)
    if base is not None and base * m.width > MAX_CHANNELS:
        raise ValueError(
            f"width {m.width} gives {base * m.width} channels in {m.name}'s widest layer; at most "
            f"{MAX_CHANNELS} (width <= {MAX_CHANNELS // base}) fit in memory"
        )
    at_most(m.hidden, MAX_HIDDEN, "hidden", "an mlp layer of this size does not fit in memory")
    if m.num_classes is not None:
        at_least(m.num_classes, 1, "num_classes")
    at_least(m.in_channels, 1, "in_channels")
    at_least(m.image_size, 1, "image_size")
    at_most(m.image_size, 1024, "image_size", "bnlab's models are for small images")


def check_data(d: Any) -> None:
    at_most(d.subset, MAX_IMAGES, "subset", "more images than any dataset bnlab reads")
    at_most(d.val_size, MAX_IMAGES, "val_size", "more images than any dataset bnlab reads")
    for name in ("synthetic_train", "synthetic_test"):
        at_least(getattr(d, name), 1, name)
        at_most(getattr(d, name), MAX_SYNTHETIC, name, "1.2 GB of float32 images per split")


def check_optim(o: Any) -> None:
    at_most(o.batch_size, MAX_BATCH, "batch_size", "larger than the train split of any dataset bnlab reads")
    positive(o.gamma, "gamma (the step schedule's lr factor)")
    if o.grad_clip is not None:
        positive(o.grad_clip, "grad_clip (a maximum gradient norm)")
    if o.warmup.factor < 0:
        raise ValueError("warmup factor must be >= 0")


def check_probe(p: Any) -> None:
    given = [x is not None for x in (p.every, p.at, p.log_spaced)]
    if sum(given) != 1:
        raise ValueError(f"probe {p.name!r} needs exactly one of every / at / log_spaced")
    if p.every is not None and p.every < 1:
        raise ValueError("probe every must be >= 1")
    if p.log_spaced is not None and (
        len(p.log_spaced) != 3 or p.log_spaced[0] < 1 or not 1 <= p.log_spaced[2] <= 10_000
    ):
        raise ValueError("log_spaced is [first >= 1, last, count in 1..10000]")
    at_least(p.batches, 1, f"probe {p.name!r} batches")
    at_most(p.batches, MAX_PROBE_BATCHES, f"probe {p.name!r} batches", "a probe this large never finishes")
    if p.batch_size is not None:
        at_least(p.batch_size, 1, f"probe {p.name!r} batch_size")
        at_most(p.batch_size, MAX_BATCH, f"probe {p.name!r} batch_size", "larger than any train split")


def check_train(t: Any) -> None:
    if t.steps is None and t.epochs is None:
        raise ValueError("give train.epochs or train.steps")
    if t.steps is not None:
        at_least(t.steps, 0, "train.steps")
        at_most(t.steps, MAX_STEPS, "train.steps", "a run this long never finishes")
    if t.epochs is not None:
        finite(t.epochs, "train.epochs")
        if t.epochs < 0:
            raise ValueError("train.epochs must be >= 0")
        at_most(t.epochs, MAX_EPOCHS, "train.epochs", "a run this long never finishes")
    if t.sync_every is not None:
        at_least(t.sync_every, 1, "train.sync_every")
    if isinstance(t.compile, str) and t.compile not in COMPILE_MODES:
        raise ValueError(
            f"train.compile must be true, false or one of {', '.join(COMPILE_MODES)}, got {t.compile!r}"
        )
    for name in ("eval_every", "checkpoint_every", "checkpoint_minutes"):
        v = getattr(t, name)
        finite(v, f"train.{name}")
        if v <= 0:
            raise ValueError(f"train.{name} must be positive, got {v}")
    at_least(t.eval_train_subset, 0, "train.eval_train_subset")
    if t.eval_test_subset is not None:
        at_least(t.eval_test_subset, 1, "train.eval_test_subset")
    at_least(t.keep_checkpoints, 0, "train.keep_checkpoints (0 keeps all)")
    if not 0 <= t.seed < SEED_LIMIT:
        raise ValueError(f"train.seed must be in [0, 2**63) (torch takes a 64-bit seed), got {t.seed}")
    if t.threads is not None:
        at_least(t.threads, 1, "train.threads")
        at_most(t.threads, MAX_THREADS, "train.threads", "more threads than any machine has cores")
    if not DEVICE.match(t.device):
        raise ValueError(f"train.device must be auto, cpu, mps, cuda or cuda:N, got {t.device!r}")
    at_least(t.log_every, 1, "train.log_every")
    at_least(t.layer_stats_every, 0, "train.layer_stats_every")


def finite(v: float, what: str) -> None:
    if not math.isfinite(v):
        raise ValueError(f"{what} must be a finite number, got {v}")


def nonfinite_path(obj: Any, path: str = "") -> str | None:
    """The dotted path of the first non-finite float in plain data (a config dump), or None."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return path or "config"
    if isinstance(obj, dict):
        for k, v in obj.items():
            hit = nonfinite_path(v, f"{path}.{k}" if path else str(k))
            if hit:
                return hit
    if isinstance(obj, list | tuple):
        for i, v in enumerate(obj):
            hit = nonfinite_path(v, f"{path}[{i}]")
            if hit:
                return hit
    return None


# --- YAML ----------------------------------------------------------------------------------------------
class _BoundedLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses nesting deeper than MAX_YAML_DEPTH while composing (before Python's
    recursion limit is near)."""

    _depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:  # type: ignore[override]
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                raise _TooDeep
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


class _TooDeep(Exception):
    pass


def load_yaml_text(text: str, what: str) -> Any:
    """Parse YAML text (a config file or an override value) safely: no Python tags, bounded nesting,
    bounded size after alias expansion, no cycles. Any problem is a one-sentence UserError naming `what`."""
    if len(text) > MAX_YAML_BYTES:
        raise UserError(f"{what} is {len(text)} characters; a config is at most {MAX_YAML_BYTES}")
    try:
        data = yaml.load(text, Loader=_BoundedLoader)  # noqa: S506 - a SafeLoader subclass
    except _TooDeep:
        raise UserError(f"{what} nests deeper than {MAX_YAML_DEPTH} levels; a config is shallow") from None
    except yaml.YAMLError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"{what} is not valid YAML ({first})") from None
    check_expanded_size(data, what)
    return data


def check_expanded_size(data: Any, what: str) -> None:
    """Refuse data whose expansion (aliases followed) exceeds MAX_NODES or that refers to itself: hashing
    or copying it (json.dumps) would never finish."""
    sizes: dict[int, int] = {}

    def size(obj: Any, active: set[int]) -> int:
        if not isinstance(obj, dict | list):
            return 1
        key = id(obj)
        if key in sizes:
            return sizes[key]
        if key in active or len(active) > MAX_YAML_DEPTH:
            raise UserError(f"{what} refers to itself or nests too deep (YAML anchors and aliases)")
        active.add(key)
        items = obj.values() if isinstance(obj, dict) else obj
        n = 1
        for v in items:
            n += size(v, active)
            if n > MAX_NODES:
                raise UserError(
                    f"{what} expands to more than {MAX_NODES} values (YAML aliases): refused as an alias bomb"
                )
        active.discard(key)
        sizes[key] = n
        return n

    size(data, set())


def read_yaml_file(path: str | Path) -> Any:
    """A YAML file's data (see `load_yaml_text`); a missing, non-UTF-8 or oversized file is a UserError."""
    p = Path(path)
    what = f"config file {str(p)!r}"
    if not p.is_file():
        raise UserError(f"{what} does not exist")
    if p.stat().st_size > MAX_YAML_BYTES:
        raise UserError(f"{what} is {p.stat().st_size} bytes; a config is at most {MAX_YAML_BYTES}")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{what} is not UTF-8 text") from None
    except OSError as e:
        raise UserError(f"{what} cannot be read ({e.strerror})") from None
    return load_yaml_text(text, what)


def one_sentence(err: Any) -> str:
    """A pydantic ValidationError as one sentence."""
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"]) or "config"
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        return f"unknown config key {loc!r} (see docs/config.md for the schema)"
    return f"invalid config value for {loc}: {msg}"
