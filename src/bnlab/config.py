"""The complete run configuration: pydantic models (extra="forbid"), YAML loading, `a.b=value`
overrides and the canonical hash that names a run.

Every field is documented in docs/config.md. Here: the schema and the rules that need no registry
(ResNet depth 6n+2, ranges); config imports nothing above it. Registry names and typed task options are
checked one layer up where a config is resolved to run: `bnlab.tasks.check` / `bnlab.tasks.resolve`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from bnlab.errors import UserError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class InitConfig(_Strict):
    # conv, fc: names in `bnlab ls inits`
    conv: str = "kaiming_fan_in"  # He et al. 2015 (the ResNet default); the paper says Xavier: see PAPER.md
    fc: str = "default"  # PyTorch's Linear default (uniform, bound 1/sqrt(fan_in))
    zero_last_gamma: bool = False  # gamma of each block's last norm = 0 (Goyal et al. 2017)
    balanced_output_bias: bool = False  # FC bias set on a calibration batch so mean softmax = 1/K


class ModelConfig(_Strict):
    name: str = "resnet_cifar"  # resnet_cifar | vgg_cifar | mlp
    # resnet: 6n+2; vgg: number of conv layers (8, 11, 13, 16, 19); mlp: number of linear layers
    depth: int = 20
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

    @field_validator("depth")
    @classmethod
    def _positive_depth(cls, v: int) -> int:
        if v < 1:
            raise ValueError("depth must be positive")
        return v

    @model_validator(mode="after")
    def _check_architecture(self) -> ModelConfig:
        if self.name == "resnet_cifar" and (self.depth - 2) % 6 != 0:
            raise ValueError(
                f"resnet_cifar depth must be 6n+2 (8, 14, 20, 32, 56, 110, ...), got {self.depth}"
            )
        if self.width < 1 or self.hidden < 1:
            raise ValueError("width and hidden must be >= 1")
        return self


class DataConfig(_Strict):
    name: str = "cifar10"  # cifar10 | cifar100 | synthetic | arrays
    # folder holding cifar-10-batches-py/ (or that folder); else $BNLAB_DATA, ~/.cache/bnlab
    root: str | None = None
    subset: int | None = None  # train on a seeded, class-stratified subset of this many images
    val_size: int = 5000  # held out of the train split (45k/5k); the test split is never touched
    augment: bool = True  # 4-px pad + random crop + horizontal flip, on the training device
    synthetic_train: int = 2048  # synthetic only: images in the train split (before the val split)
    synthetic_test: int = 512

    @field_validator("subset")
    @classmethod
    def _subset(cls, v: int | None) -> int | None:
        if v is not None and v < 1:
            raise ValueError("subset must be a positive number of images")
        return v

    @field_validator("val_size")
    @classmethod
    def _val(cls, v: int) -> int:
        if v < 0:
            raise ValueError("val_size must be >= 0")
        return v


class WarmupConfig(_Strict):
    kind: Literal["none", "constant", "linear"] = "none"
    steps: int = 0
    factor: float = 0.1  # relative to the base lr: He et al.'s 0.01 at lr 0.1 = factor 0.1

    @field_validator("steps")
    @classmethod
    def _steps(cls, v: int) -> int:
        if v < 0:
            raise ValueError("warmup steps must be >= 0")
        return v


class OptimConfig(_Strict):
    lr: float = 0.1  # per 128 examples unless batch_size says otherwise
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 1e-4  # He et al. 2016
    exclude_norm_and_bias_from_wd: bool = False  # selected by module type, never by name
    batch_size: int = 128
    schedule: Literal["step", "cosine", "constant"] = "step"
    milestones: list[float] = Field(default_factory=lambda: [0.5, 0.75])  # fractions of training
    gamma: float = 0.1  # step schedule: lr multiplied by this at each milestone
    warmup: WarmupConfig = Field(default_factory=WarmupConfig)
    grad_clip: float | None = None  # max global gradient norm

    @field_validator("lr")
    @classmethod
    def _lr(cls, v: float) -> float:
        if not v > 0 or v != v or v == float("inf"):
            raise ValueError(f"lr must be a positive finite number, got {v}")
        return v

    @field_validator("batch_size")
    @classmethod
    def _bs(cls, v: int) -> int:
        if v < 1:
            raise ValueError("batch_size must be >= 1")
        return v

    @field_validator("momentum")
    @classmethod
    def _mom(cls, v: float) -> float:
        if not 0 <= v < 1:
            raise ValueError("momentum must be in [0, 1)")
        return v

    @field_validator("weight_decay")
    @classmethod
    def _wd(cls, v: float) -> float:
        if v < 0:
            raise ValueError("weight_decay must be >= 0")
        return v

    @field_validator("milestones")
    @classmethod
    def _ms(cls, v: list[float]) -> list[float]:
        if any(not 0 < m < 1 for m in v) or sorted(v) != v:
            raise ValueError("milestones must be increasing fractions of training in (0, 1)")
        return v


class DivergenceConfig(_Strict):
    mode: Literal["relative", "absolute"] = "relative"
    threshold: float = 1e3  # relative: x the first step's loss; absolute: the loss itself (the paper: 1e3)

    @field_validator("threshold")
    @classmethod
    def _thr(cls, v: float) -> float:
        if not v > 0:
            raise ValueError("divergence threshold must be positive")
        return v


class ProbeSchedule(_Strict):
    """A probe run during training: `every` n steps, `at` listed steps, or `log_spaced` [a, b, k]."""

    name: str
    every: int | None = None
    at: list[int] | None = None
    log_spaced: list[int] | None = None  # [first, last, count]
    batches: int = 1  # minibatches handed to the probe (drawn from the train split, fixed per probe)
    batch_size: int | None = None  # default: optim.batch_size
    options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_schedule(self) -> ProbeSchedule:
        given = [x is not None for x in (self.every, self.at, self.log_spaced)]
        if sum(given) != 1:
            raise ValueError(f"probe {self.name!r} needs exactly one of every / at / log_spaced")
        if self.every is not None and self.every < 1:
            raise ValueError("probe every must be >= 1")
        if self.log_spaced is not None and (len(self.log_spaced) != 3 or self.log_spaced[0] < 1):
            raise ValueError("log_spaced is [first >= 1, last, count]")
        return self

    def steps(self, total: int) -> set[int]:
        """The steps (0 = before the first update) at which this probe runs, within [0, total]."""
        if self.at is not None:
            return {s for s in self.at if 0 <= s <= total}
        if self.every is not None:
            return set(range(0, total + 1, self.every))
        import numpy as np

        a, b, k = self.log_spaced  # type: ignore[misc]
        return {int(round(x)) for x in np.geomspace(a, b, k) if x <= total}


class TrainConfig(_Strict):
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
    compile: bool = False  # torch.compile the model (CUDA; state dicts stay those of the plain module)
    # steps between host reads (for CUDA) of the losses (divergence still reported at its exact step)
    sync_every: int = 1
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

    @model_validator(mode="after")
    def _budget(self) -> TrainConfig:
        if self.steps is None and self.epochs is None:
            raise ValueError("give train.epochs or train.steps")
        if self.steps is not None and self.steps < 0:
            raise ValueError("train.steps must be >= 0")
        if self.epochs is not None and self.epochs < 0:
            raise ValueError("train.epochs must be >= 0")
        if self.sync_every < 1:
            raise ValueError("train.sync_every must be >= 1")
        if self.eval_every <= 0 or self.checkpoint_every <= 0:
            raise ValueError("eval_every and checkpoint_every must be positive")
        return self


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


def _one_sentence(err: ValidationError) -> str:
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"]) or "config"
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        return f"unknown config key {loc!r} (see docs/config.md for the schema)"
    return f"invalid config value for {loc}: {msg}"


def validate(raw: dict[str, Any]) -> Config:
    """Build a Config from a plain dict, schema only (registry names and task options: `bnlab.tasks.check`);
    any problem becomes a one-sentence UserError."""
    try:
        return Config.model_validate(raw)
    except ValidationError as e:
        raise UserError(_one_sentence(e)) from None


def parse_override(item: str) -> tuple[list[str], Any]:
    """`a.b=value` -> (['a', 'b'], value parsed with yaml.safe_load)."""
    if "=" not in item:
        raise UserError(f"override {item!r} is not of the form key.path=value")
    key, _, text = item.partition("=")
    parts = key.strip().split(".")
    if not all(p.strip() for p in parts):
        raise UserError(f"override {item!r} has an empty key")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError:
        raise UserError(f"override {item!r}: the value is not valid YAML") from None
    if isinstance(value, str):  # YAML 1.1 reads 1e-3 as a string; researchers mean a number
        try:
            value = float(value) if value.strip().lower() not in ("nan", "inf", "-inf", "infinity") else value
        except ValueError:
            pass
    return parts, value


def apply_overrides(raw: dict[str, Any], overrides: list[str] | dict[str, Any]) -> dict[str, Any]:
    """Return a deep copy of `raw` with dotted overrides applied (list of 'a.b=v' or {'a.b': v})."""
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
    if not p.is_file():
        raise UserError(f"config file {str(p)!r} does not exist")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise UserError(f"config file {str(p)!r} is not valid YAML ({str(e).splitlines()[0]})") from None
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
