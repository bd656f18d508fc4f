"""Run directories, atomic writes, checkpoints and the readers `load_runs()` / `load_probes()`."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import yaml

from bnlab.config import flatten, run_id, validate
from bnlab.errors import UserError
from bnlab.store.files import read_json, read_jsonl
from bnlab.store.rundir import TERMINAL, RunDir, RunLock, write_probe

__all__ = [
    "RunDir",
    "RunLock",
    "TERMINAL",
    "write_probe",
    "load_runs",
    "load_probes",
    "load_metrics",
    "run_dirs",
    "expected_run_id",
]


def expected_run_id(config: dict) -> str | None:
    """The run id a run directory holding this config.yaml must have, or None when it cannot be checked:
    a Monitor's run (`kind: monitor`, its own id rule), a config that is not a complete resolved config as
    bnlab writes it (hand-written or test fixtures, or written by an older schema)."""
    if not isinstance(config, dict) or config.get("kind") == "monitor":
        return None
    try:
        cfg = validate(config)
    except UserError:
        return None
    if cfg.model_dump(mode="json") != config:
        return None
    return run_id(cfg)


def run_dirs(root: str | Path) -> list[Path]:
    """Every run directory under `root` (a folder holding config.yaml), sorted."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p.parent for p in root.glob("*/config.yaml"))


def load_runs(root: str | Path) -> pd.DataFrame:
    """One row per run: run_id, run_dir, state, step, reason, config as dotted columns, summary.*, meta.*.

    A run whose config.yaml no longer hashes to its directory name (edited after the run) or cannot be read
    is left out; `df.attrs["skipped"]` says which and why (readers print it)."""
    rows = []
    skipped: list[str] = []
    for d in run_dirs(root):
        rd = RunDir(d)
        try:
            cfg = yaml.safe_load(rd.config.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, RecursionError, yaml.YAMLError):
            skipped.append(f"run {d.name}: config.yaml unreadable, left out")
            continue
        if cfg is None:
            cfg = {}
        if not isinstance(cfg, dict):
            skipped.append(f"run {d.name}: config.yaml is not a mapping, left out")
            continue
        want = expected_run_id(cfg)
        if want is not None and want != d.name:
            skipped.append(
                f"run {d.name}: config.yaml hashes to run id {want} (edited after the run?), left out"
            )
            continue
        st = rd.status()
        row = {
            "run_id": d.name,
            "run_dir": str(d),
            "state": st.get("state"),
            "step": st.get("step"),
            "reason": st.get("reason"),
            "final_loss": st.get("loss"),
        }
        row.update({k: str(v) if isinstance(v, list) else v for k, v in flatten(cfg).items()})
        row.update({f"summary.{k}": v for k, v in (read_json(rd.summary, {}) or {}).items()})
        row.update({f"meta.{k}": v for k, v in (read_json(d / "meta.json", {}) or {}).items()})
        rows.append(row)
    df = pd.DataFrame(rows)
    df.attrs["skipped"] = skipped
    return df


def load_metrics(root: str | Path) -> pd.DataFrame:
    """All metrics.jsonl lines of all runs, with a run_id column."""
    frames = []
    for d in run_dirs(root):
        rows = read_jsonl(d / "metrics.jsonl")[0]
        if rows:
            df = pd.DataFrame(rows)
            df.insert(0, "run_id", d.name)
            frames.append(df)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def load_probes(root: str | Path, probe: str) -> pd.DataFrame:
    """All rows of probes/<probe>.jsonl across runs, with a run_id column."""
    frames = []
    for d in run_dirs(root):
        rows = read_jsonl(d / "probes" / f"{probe}.jsonl")[0]
        if rows:
            df = pd.DataFrame(rows)
            df.insert(0, "run_id", d.name)
            frames.append(df)
    if not frames:
        return pd.DataFrame()
    df = pd.concat(frames, ignore_index=True)
    if "paper_layer" in df.columns:
        df["paper_layer"] = df["paper_layer"].astype("Int64")
    return df
