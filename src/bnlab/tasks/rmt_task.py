"""Task `rmt` (E10): random-matrix computations run by the sweep executor, no training.

cfg.task_options["kind"] selects one study from bnlab.rmt.study; the other options are its keyword
arguments, e.g. {"kind": "spectra", "n": 1000, "ms": [1, 3, 5], "draws": 10, "bins": 50}. RmtOptions
types them per kind: one pydantic model per study, made from the study function's signature.
Kinds: spectra, universality (spectra over gaussian/uniform/rademacher/student_t), lyapunov,
condition, normalized, jacobian. Tables go to probes/rmt_<kind>.jsonl via store.write_probe.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict, ValidationError, create_model

from bnlab.config import Config, to_yaml
from bnlab.errors import UserError
from bnlab.probes.result import ProbeResult
from bnlab.rmt import study
from bnlab.store import RunDir, write_probe
from bnlab.store.files import atomic_write_json, atomic_write_text
from bnlab.tasks.options import TaskOptions, options_error

UNIVERSAL_DISTS = ("gaussian", "uniform", "rademacher", "student_t")

KINDS: dict[str, Callable[..., ProbeResult]] = {
    "spectra": study.spectra,
    "universality": study.spectra,
    "lyapunov": study.lyapunov,
    "condition": study.condition,
    "normalized": study.normalized,
    "jacobian": study.mlp_jacobians,
}


def _options_model(kind: str, fn: Callable[..., ProbeResult]) -> type[TaskOptions]:
    """{kind: Literal[kind]} + the study's keyword arguments (typed by its annotations), extra="forbid"."""
    hints = typing.get_type_hints(fn)
    fields: dict[str, Any] = {"kind": (Literal[kind], kind)}
    for name, p in inspect.signature(fn).parameters.items():
        default = ... if p.default is inspect.Parameter.empty else p.default
        fields[name] = (hints.get(name, Any), default)
    return create_model(
        f"Rmt{kind.title()}Options",
        __base__=TaskOptions,
        __config__=None,
        **fields,
    )


RMT_OPTIONS: dict[str, type[TaskOptions]] = {k: _options_model(k, fn) for k, fn in KINDS.items()}


class RmtOptions(TaskOptions):
    """The options of task `rmt`: `kind` (default spectra) picks the per-kind model in RMT_OPTIONS."""

    model_config = ConfigDict(extra="allow", frozen=True)
    kind: str = "spectra"

    @classmethod
    def parse(cls, raw: dict[str, Any], task: str = "rmt") -> TaskOptions:  # type: ignore[override]
        kind = str(raw.get("kind", "spectra"))
        if kind not in RMT_OPTIONS:
            raise UserError(f"unknown rmt kind {kind!r}; choose one of: {', '.join(KINDS)}")
        model = RMT_OPTIONS[kind]
        try:
            return model.model_validate({**raw, "kind": kind})
        except ValidationError as e:
            raise UserError(options_error(e, model, f"{task} (kind {kind})")) from None


def run_kind(kind: str, options: dict[str, Any]) -> ProbeResult:
    """Run one study by name with keyword options (unknown options are a UserError naming the valid ones)."""
    if kind not in KINDS:
        raise UserError(f"unknown rmt kind {kind!r}; choose one of: {', '.join(KINDS)}")
    fn = KINDS[kind]
    RmtOptions.parse({**options, "kind": kind})  # unknown or mistyped options: one sentence naming the valid
    opts = dict(options)
    if kind == "universality":
        opts.setdefault("dists", UNIVERSAL_DISTS)
    for key in ("ms", "dists", "seeds", "depths", "activations"):
        if key in opts and not isinstance(opts[key], str):
            opts[key] = tuple(opts[key])
    return fn(**opts)


def run_task(cfg: Config, run_dir: str | Path) -> dict[str, Any]:
    """Executor entry point for cfg.task == "rmt": compute, write probes/rmt_<kind>.*, mark complete."""
    options = dict(cfg.task_options)
    kind = str(options.pop("kind", "spectra"))
    rd = RunDir(run_dir)
    rd.path.mkdir(parents=True, exist_ok=True)
    atomic_write_text(rd.config, to_yaml(cfg))
    # env.json as a training run writes it; the random-matrix computations run in numpy on the CPU
    import torch

    from bnlab.store.rundir import environment

    atomic_write_json(rd.path / "env.json", environment("cpu", torch.get_num_threads(), True))
    rd.set_status("running", 0)
    try:
        result = run_kind(kind, options)
    except UserError as e:
        rd.set_status("failed", 0, reason=str(e))
        raise
    write_probe(rd.path, f"rmt_{kind}", result, step=0)
    summary = {"kind": kind, "rows": int(len(result.table))}
    ks = result.table[result.table["metric"] == "ks"]
    if len(ks):
        summary["max_ks"] = float(ks["value"].max())
    atomic_write_json(rd.summary, summary)
    rd.set_status("complete", 0)
    return rd.status()
