"""Task `rmt` (E10): random-matrix computations run by the sweep executor, no training.

cfg.task_options["kind"] selects one study from bnlab.rmt.study; the other options are its keyword
arguments, e.g. {"kind": "spectra", "n": 1000, "ms": [1, 3, 5], "draws": 10, "bins": 50}.
Kinds: spectra, universality (spectra over gaussian/uniform/rademacher/student_t), lyapunov,
condition, normalized, jacobian. Tables go to probes/rmt_<kind>.jsonl via store.write_probe.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bnlab.config import Config
from bnlab.errors import UserError
from bnlab.probes.result import ProbeResult
from bnlab.rmt import study

UNIVERSAL_DISTS = ("gaussian", "uniform", "rademacher", "student_t")

KINDS: dict[str, Callable[..., ProbeResult]] = {
    "spectra": study.spectra,
    "universality": study.spectra,
    "lyapunov": study.lyapunov,
    "condition": study.condition,
    "normalized": study.normalized,
    "jacobian": study.mlp_jacobians,
}


def run_kind(kind: str, options: dict[str, Any]) -> ProbeResult:
    """Run one study by name with keyword options (unknown options are a UserError naming the valid ones)."""
    if kind not in KINDS:
        raise UserError(f"unknown rmt kind {kind!r}; choose one of: {', '.join(KINDS)}")
    fn = KINDS[kind]
    valid = set(inspect.signature(fn).parameters)
    bad = sorted(set(options) - valid)
    if bad:
        raise UserError(f"unknown option {bad[0]!r} for rmt kind {kind!r}; valid: {', '.join(sorted(valid))}")
    opts = dict(options)
    if kind == "universality":
        opts.setdefault("dists", UNIVERSAL_DISTS)
    for key in ("ms", "dists", "seeds", "depths", "activations"):
        if key in opts and not isinstance(opts[key], str):
            opts[key] = tuple(opts[key])
    return fn(**opts)


def run_task(cfg: Config, run_dir: str | Path) -> dict[str, Any]:
    """Executor entry point for cfg.task == "rmt": compute, write probes/rmt_<kind>.*, mark complete."""
    from bnlab.config import to_yaml
    from bnlab.store import RunDir, write_probe
    from bnlab.store.files import atomic_write_json, atomic_write_text

    options = dict(cfg.task_options)
    kind = str(options.pop("kind", "spectra"))
    rd = RunDir(run_dir)
    rd.path.mkdir(parents=True, exist_ok=True)
    atomic_write_text(rd.config, to_yaml(cfg))
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
