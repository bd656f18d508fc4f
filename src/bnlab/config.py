"""The complete run configuration: pydantic models (extra="forbid"), YAML loading, `a.b=value`
overrides and the canonical hash that names a run.

Every field is documented in docs/config.md. Here: the schema and the rules that need no registry
(ResNet depth 6n+2, ranges); config imports nothing above it. Registry names and typed task options are
checked one layer up where a config is resolved to run: `bnlab.tasks.check` / `bnlab.tasks.resolve`.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from bnlab import config_checks as checks
from bnlab.errors import UserError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class _Checked(_Strict):
    """A section whose fields are also checked together, after they validate, by its `_section_check` in
    config_checks (rules across fields and size limits, each failure one sentence)."""

    _section_check: ClassVar[Callable[[Any], None]]

    @model_validator(mode="after")
    def _check_section(self) -> _Checked:
        type(self)._section_check(self)
        return self


def _must(ok: Callable[[Any], bool], message: str) -> AfterValidator:
    """A field's rule: `ok(value)` holds, else `message` ({v}: the value) is the validation error."""

    def check(v: Any) -> Any:
        if not ok(v):
            raise ValueError(message.format(v=v))
        return v

    return AfterValidator(check)


class InitConfig(_Strict):
    # conv, fc: names in `bnlab ls inits`
    conv: str = "kaiming_fan_in"  # He et al. 2015 (the ResNet default); the paper says Xavier: see PAPER.md
    fc: str = "default"  # PyTorch's Linear default (uniform, bound 1/sqrt(fan_in))
    zero_last_gamma: bool = False  # gamma of each block's last norm = 0 (Goyal et al. 2017)
    balanced_output_bias: bool = False  # FC bias set on a calibration batch so mean softmax = 1/K


class ModelConfig(_Checked):
    _section_check = checks.check_model  # 6n+2 and the size limits

    name: str = "resnet_cifar"  # resnet_cifar | vgg_cifar | mlp
    # resnet: 6n+2; vgg: number of conv layers (8, 11, 13, 16, 19); mlp: number of linear layers
    depth: Annotated[int, _must(lambda v: v >= 1, "depth must be positive")] = 20
    width: int = 1  # resnet/vgg: channel multiplier of the base width 16 / 64
    hidden: int = 512  # mlp: hidden units
    activation: Literal["relu", "linear"] = "relu"  # mlp only
    norm: str = "batch"  # a name in `bnlab ls norms`
    norm_kw: dict[str, Any] = Field(default_factory=dict)  # passed to the norm factory
    placement: Literal["all", "final_prepool", "final_prefc", "none"] = "all"
    block: Literal["post", "pre"] = "post"  # He 2016 post-activation, or pre-activation
    shortcut: Literal["A", "B"] = "A"  # A: zero-pad identity; B: 1x1 projection + norm
    skipinit: bool = False  # a learnable scalar (init 0) on each residual branch
    # Fixup (Zhang et al. 2019): scalar biases/multiplier, rescaled branch init; needs norm none
    fixup: bool = False
    num_classes: int | None = None  # None: taken from the dataset
    in_channels: int = 3
    image_size: int = 32
    init: InitConfig = Field(default_factory=InitConfig)


class DataConfig(_Checked):
    _section_check = checks.check_data

    name: str = "cifar10"  # cifar10 | cifar100 | synthetic | arrays
    # folder holding cifar-10-batches-py/ (or that folder); else $BNLAB_DATA, ~/.cache/bnlab
    root: str | None = None
    # train on a seeded, class-stratified subset of this many images
    subset: Annotated[
        int | None, _must(lambda v: v is None or v >= 1, "subset must be a positive number of images")
    ] = None
    # held out of the train split (45k/5k); the test split is never touched
    val_size: Annotated[int, _must(lambda v: v >= 0, "val_size must be >= 0")] = 5000
    augment: bool = True  # 4-px pad + random crop + horizontal flip, on the training device
    synthetic_train: int = 2048  # synthetic only: images in the train split (before the val split)
    synthetic_test: int = 512


class WarmupConfig(_Strict):
    kind: Literal["none", "constant", "linear"] = "none"
    steps: Annotated[int, _must(lambda v: v >= 0, "warmup steps must be >= 0")] = 0
    factor: float = 0.1  # relative to the base lr: He et al.'s 0.01 at lr 0.1 = factor 0.1


class OptimConfig(_Checked):
    _section_check = checks.check_optim

    # per 128 examples unless batch_size says otherwise
    lr: Annotated[
        float, _must(lambda v: v > 0 and math.isfinite(v), "lr must be a positive finite number, got {v}")
    ] = 0.1
    momentum: Annotated[float, _must(lambda v: 0 <= v < 1, "momentum must be in [0, 1)")] = 0.9
    nesterov: bool = False
    # He et al. 2016
    weight_decay: Annotated[float, _must(lambda v: v >= 0, "weight_decay must be >= 0")] = 1e-4
    exclude_norm_and_bias_from_wd: bool = False  # selected by module type, never by name
    batch_size: Annotated[int, _must(lambda v: v >= 1, "batch_size must be >= 1")] = 128
    schedule: Literal["step", "cosine", "constant"] = "step"
    milestones: Annotated[  # fractions of training
        list[float],
        _must(
            lambda v: all(0 < m < 1 for m in v) and sorted(v) == v,
            "milestones must be increasing fractions of training in (0, 1)",
        ),
    ] = Field(default_factory=lambda: [0.5, 0.75])
    gamma: float = 0.1  # step schedule: lr multiplied by this at each milestone
    warmup: WarmupConfig = Field(default_factory=WarmupConfig)
    grad_clip: float | None = None  # max global gradient norm


class DivergenceConfig(_Strict):
    mode: Literal["relative", "absolute"] = "relative"
    # relative: x the first step's loss; absolute: the loss itself (the paper: 1e3)
    threshold: Annotated[float, _must(lambda v: v > 0, "divergence threshold must be positive")] = 1e3


class ProbeSchedule(_Checked):
    """A probe run during training: `every` n steps, `at` listed steps, or `log_spaced` [a, b, k]."""

    _section_check = checks.check_probe

    name: str
    every: int | None = None
    at: list[int] | None = None
    log_spaced: list[int] | None = None  # [first, last, count]
    batches: int = 1  # minibatches handed to the probe (drawn from the train split, fixed per probe)
    batch_size: int | None = None  # default: optim.batch_size
    options: dict[str, Any] = Field(default_factory=dict)

    def steps(self, total: int) -> set[int]:
        """The steps (0 = before the first update) at which this probe runs, within [0, total]."""
        if self.at is not None:
            return {s for s in self.at if 0 <= s <= total}
        if self.every is not None:
            return set(range(0, total + 1, self.every))
        import numpy as np

        a, b, k = self.log_spaced  # type: ignore[misc]
        return {int(round(x)) for x in np.geomspace(a, b, k) if x <= total}


class TrainConfig(_Checked):
    _section_check = checks.check_train

    epochs: float | None = 164  # He et al.'s 64k iterations at batch 128 ~ 164 epochs
    steps: int | None = None  # if set, the budget in optimizer steps (overrides epochs)
    eval_every: float = 1.0  # epochs between evaluations (test, val, train_eval)
    eval_train_subset: int = 1000  # images of the train split evaluated in eval mode (fixed, seeded)
    # intermediate evaluations on a fixed seeded test subset (the final one is full)
    eval_test_subset: int | None = None
    evaluate: bool = True  # False: no evaluation passes at all (max-lr trials); train metrics only
    divergence: DivergenceConfig = Field(default_factory=DivergenceConfig)
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: bool = False  # bf16 autocast on CUDA (fp32 master weights and BN statistics)
    channels_last: bool = False
    # torch.compile the model on CUDA (ignored on CPU): false, true (= "default") or a torch.compile mode:
    # reduce-overhead (CUDA graphs), max-autotune, max-autotune-no-cudagraphs; off until measured on a GPU
    compile: bool | str = False
    # steps between host reads of the losses (divergence still reported at its exact step); None: every
    # step on CPU (a read costs nothing there), every 50 on CUDA (no per-step host sync)
    sync_every: int | None = None
    checkpoint_every: float = 1.0  # epochs; also at least every checkpoint_minutes
    checkpoint_minutes: float = 5.0
    keep_checkpoints: int = 2
    recalibrate_bn: bool = False  # re-estimate BN running statistics before each evaluation
    deterministic: bool = False  # torch.use_deterministic_algorithms
    threads: int | None = None  # torch intra-op threads (not part of the run id)
    log_every: int = 50  # steps between progress updates
    tensorboard: bool = True  # write run_dir/tb/ event files when the `tb` extra (tensorboard) is installed
    # steps between the default layer_stats probe (grad/weight norms, update ratio); 0: off
    layer_stats_every: int = 100


class Config(_Strict):
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    probes: list[ProbeSchedule] = Field(default_factory=list)
    task: str = "train"  # what the executor runs: train | max_lr | diverging_step | rmt (bnlab.tasks)
    # as written (run ids hash what was set); checked by the task's typed options model (bnlab.tasks)
    task_options: dict[str, Any] = Field(default_factory=dict)


# Fields that do not change the result and so are not part of the run id: where the data and the run
# live, and what is only observed (layer_stats_every: the trajectory is tested identical; tensorboard).
HASH_EXCLUDE = {
    ("data", "root"),
    ("train", "device"),
    ("train", "threads"),
    ("train", "layer_stats_every"),
    ("train", "tensorboard"),
    ("executor",),
}
# Fields that only observe a run but were hashed before that was known: hashed as the value every earlier
# run had, whatever they are set to, so earlier ids stay valid (sync_every: results tested identical).
HASH_AS = {("train", "sync_every"): 1}


_one_sentence = checks.one_sentence  # a ValidationError as one sentence (bnlab.models uses it too)


def validate(raw: dict[str, Any]) -> Config:
    """Build a Config from a plain dict, schema only (registry names and task options: `bnlab.tasks.check`);
    any problem becomes a one-sentence UserError."""
    checks.check_expanded_size(raw, "the config")
    try:
        cfg = Config.model_validate(raw)
    except ValidationError as e:
        raise UserError(checks.one_sentence(e)) from None
    except RecursionError:
        raise UserError("the config nests too deep to be a config") from None
    where = checks.nonfinite_path(cfg.model_dump(mode="python"))
    if where is not None:
        raise UserError(f"invalid config value for {where}: must be a finite number (not nan or inf)")
    return cfg


def parse_override(item: str) -> tuple[list[str], Any]:
    """`a.b=value` -> (['a', 'b'], value parsed with yaml.safe_load)."""
    if "=" not in item:
        raise UserError(f"override {item!r} is not of the form key.path=value")
    key, _, text = item.partition("=")
    parts = key.strip().split(".")
    if not all(p.strip() for p in parts):
        raise UserError(f"override {item!r} has an empty key")
    value = checks.load_yaml_text(text, f"override {key.strip()!r}") if text.strip() else None
    if isinstance(value, str):  # YAML 1.1 reads 1e-3 as a string; researchers mean a number
        try:
            value = float(value) if value.strip().lower() not in ("nan", "inf", "-inf", "infinity") else value
        except ValueError:
            pass
    return parts, value


def apply_overrides(raw: dict[str, Any], overrides: list[str] | dict[str, Any]) -> dict[str, Any]:
    """Return a deep copy of `raw` with dotted overrides applied (list of 'a.b=v' or {'a.b': v})."""
    checks.check_expanded_size(raw, "the config")  # an alias bomb would never finish json.dumps
    out = json.loads(json.dumps(raw, default=_jsonable))
    items = (
        [(k.split("."), v) for k, v in overrides.items()]
        if isinstance(overrides, dict)
        else [parse_override(o) for o in overrides]
    )
    for parts, value in items:
        node = out
        for p in parts[:-1]:
            nxt = node.get(p)
            if nxt is None:
                nxt = node[p] = {}
            if not isinstance(nxt, dict):
                raise UserError(f"cannot set {'.'.join(parts)}: {p!r} is not a section")
            node = nxt
        node[parts[-1]] = value
    return out


def _jsonable(x: Any) -> Any:
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"not JSON serializable: {type(x).__name__}")


def load_yaml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    data = checks.read_yaml_file(p)  # UTF-8, bounded nesting and alias expansion, safe tags only
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"config file {str(p)!r} must hold a mapping at the top level")
    return data


def resolve(
    config: str | Path | dict[str, Any] | Config | None = None, overrides: list[str] | None = None
) -> Config:
    """YAML path, dict or Config, plus `a.b=value` overrides -> a schema-validated Config
    (`bnlab.tasks.resolve` also checks registry names and task options)."""
    if isinstance(config, Config):
        raw = config.model_dump(mode="json")
    elif isinstance(config, dict):
        raw = config
    elif config is None:
        raw = {}
    else:
        raw = load_yaml(config)
    if not isinstance(raw, dict):
        raise UserError("a config must be a mapping of sections (model, data, optim, train, probes)")
    return validate(apply_overrides(raw, overrides or []))


def canonical(cfg: Config) -> dict[str, Any]:
    """The resolved config as plain data, without the fields that do not change the result."""
    d = cfg.model_dump(mode="json")
    for path in HASH_EXCLUDE:
        if path == ("data", "root") and cfg.data.name == "arrays":
            continue  # for a user's own .npz, data.root is what names the data
        node = d
        for p in path[:-1]:
            node = node.get(p, {})
        node.pop(path[-1], None)
    for path, value in HASH_AS.items():
        d[path[0]][path[1]] = value
    return d


def run_id(cfg: Config) -> str:
    """A short, stable hash of the canonical resolved config (12 hex digits)."""
    blob = json.dumps(canonical(cfg), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def to_yaml(cfg: Config) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}; lists stay values."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out
