"""The run directory (schema in DESIGN.md; changing it needs a schema bump).

runs/<run_id>/
  config.yaml  env.json  status.json  metrics.jsonl  summary.json  ckpt/
  probes/<probe>.jsonl  probes/<probe>.step<k>.npz (schema <= 2: probes/<probe>.npz)  (bnlab.store.probe_files)
"""

from __future__ import annotations

import hashlib
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bnlab.store.files import (
    LinkError,
    append_line,
    atomic_write_json,
    atomic_write_text,
    dumps_line,
    process_gone,
    quarantine,
    read_json,
    read_jsonl,
    scan_jsonl,
)
from bnlab.store.lock import RunLock
from bnlab.store.probe_files import ProbeWriter, split_steps, step_key, write_probe

__all__ = [
    "RunDir",
    "RunLock",
    "ProbeWriter",
    "SCHEMA",
    "STATES",
    "TERMINAL",
    "write_probe",
    "split_steps",
    "step_key",
]

# schema 2 adds the state "interrupted" and, while running, the writer's "pid" and "host";
# readers accept schema 1 (no pid: a "running" run's process cannot be checked).
# schema 3 writes probe arrays one file per measured step, probes/<name>.step<k>.npz (bnlab.store.probe_files);
# readers accept the single probes/<name>.npz of schemas 1-2
SCHEMA = 3
TERMINAL = ("complete", "diverged")
# interrupted: stopped before finishing (Ctrl-C, a killed process, a full disk); running it again resumes
STATES = ("pending", "running", "interrupted", "complete", "diverged", "failed")


class RunDir:
    """Paths and writers of one run directory."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        # its files (the layout above)
        self.config = self.path / "config.yaml"
        self.status_file = self.path / "status.json"
        self.metrics = self.path / "metrics.jsonl"
        self.summary = self.path / "summary.json"
        self.ckpt = self.path / "ckpt"
        self.probes = self.path / "probes"

    # status
    def status(self) -> dict[str, Any]:
        """status.json as the run stands now: a "running" record whose process (same host) is gone reads
        as "interrupted"; an unreadable or malformed file reads as "pending" (`check_status` sets it aside)."""
        st = self.recorded_status()
        if st["state"] == "running" and _writer_gone(st):
            step = st.get("step") or 0
            where = f"resumes from step {step}" if step else "starts from step 0"
            st = {
                **st,
                "state": "interrupted",
                "reason": f"its process ({st['pid']}) is gone; a rerun {where}",
            }
        return st

    def recorded_status(self) -> dict[str, Any]:
        """status.json as written (schema 1 or 2), or a "pending" record when it is missing or malformed."""
        st = read_json(self.status_file, default=None)
        return st if _valid_status(st) else _status_record("pending", 0)

    def check_status(self) -> str | None:
        """Set a malformed status.json aside (quarantine); returns the warning, or None if it was fine."""
        if not self.status_file.exists() or _valid_status(read_json(self.status_file, default=None)):
            return None
        moved = quarantine(self.status_file)
        return f"status.json was malformed; set aside as {moved.name}"

    def check_links(self) -> None:
        """Refuse (LinkError, one sentence) a run directory holding a symbolic link among its files,
        probes or checkpoints: reading, appending or deleting through it would reach outside the run."""
        for folder in (self.path, self.probes, self.ckpt):
            if folder != self.path and folder.is_symlink():
                raise LinkError(_link_sentence(folder, self.path))
            if not folder.is_dir():
                continue
            for p in folder.iterdir():
                if p.is_symlink():
                    raise LinkError(_link_sentence(p, self.path))

    def state(self) -> str:
        return str(self.status().get("state", "pending"))

    def is_terminal(self) -> bool:
        return self.state() in TERMINAL

    def set_status(
        self,
        state: str,
        step: int,
        *,
        reason: str | None = None,
        loss: float | None = None,
        warnings: list[str] | None = None,
    ) -> None:
        assert state in STATES, state
        old = self.recorded_status()
        warns = list(dict.fromkeys([*(old.get("warnings") or []), *(warnings or [])]))
        atomic_write_json(self.status_file, _status_record(state, step, reason, loss, warns))

    def add_warning(self, text: str) -> None:
        st = self.recorded_status()
        self.set_status(
            st["state"], st.get("step", 0), reason=st.get("reason"), loss=st.get("loss"), warnings=[text]
        )

    # metrics
    def append_metric(self, row: dict[str, Any]) -> None:
        append_line(self.metrics, row, point="metrics_append")

    def read_metrics(self) -> list[dict[str, Any]]:
        return [r for r in read_jsonl(self.metrics)[0] if is_metric_row(r)]

    def truncate_metrics(self, up_to_step: int, saved: list[dict[str, Any]] | None = None) -> list[str]:
        """Keep metric rows with step <= up_to_step (deduplicated); returns warnings.

        Called on resume: rows written after the checkpoint will be written again, identically. Lines that
        are not metric rows (garbage, `42`, a non-integer step) set the file aside (quarantine) and keep its
        good rows. `saved`: the rows the checkpoint recorded up to its step; rows missing from the file
        (deleted or lost) are restored from it and said so."""
        rows, bad, torn = scan_jsonl(self.metrics)
        warns: list[str] = []
        invalid = len(bad) + sum(not is_metric_row(r) for r in rows)
        if invalid:
            moved = quarantine(self.metrics)
            warns.append(
                f"metrics.jsonl had {invalid} line(s) that are not metric rows; set aside as {moved.name}"
            )
        keep, seen = [], set()
        for r in rows:
            key = (r.get("step"), r.get("epoch"), r.get("split"))
            if is_metric_row(r) and r["step"] <= up_to_step and key not in seen:
                seen.add(key)
                keep.append(r)
        if saved is not None:
            have = {(r["step"], r.get("epoch"), r.get("split")) for r in keep}
            lost = [r for r in saved if (r["step"], r.get("epoch"), r.get("split")) not in have]
            if lost:
                warns.append(
                    f"metrics.jsonl lacked {len(lost)} row(s) up to step {up_to_step}; restored from the checkpoint"
                )
                keep = sorted([*keep, *lost], key=lambda r: r["step"])
        if invalid or len(keep) != len(rows) or torn:
            atomic_write_text(self.metrics, "".join(dumps_line(r) + "\n" for r in keep))
        return warns


def is_metric_row(row: Any) -> bool:
    """A metrics.jsonl row: a dict with an integer step and a split name."""
    return (
        isinstance(row, dict)
        and isinstance(row.get("step"), int)
        and not isinstance(row.get("step"), bool)
        and isinstance(row.get("split"), str)
    )


def _valid_status(st: Any) -> bool:
    return (
        isinstance(st, dict)
        and st.get("state") in STATES
        and isinstance(st.get("step", 0), int)
        and isinstance(st.get("warnings") or [], list)
    )


def _writer_gone(st: dict[str, Any]) -> bool:
    """A schema-2 running record's process has ended (only checkable on the host that wrote it)."""
    pid = st.get("pid")
    if not isinstance(pid, int) or st.get("host") != socket.gethostname():
        return False
    return process_gone(pid, zombie=True)


def _link_sentence(p: Path, run: Path) -> str:
    return (
        f"run directory {run} holds a symbolic link ({p.relative_to(run)}); bnlab never reads, writes "
        "or deletes through links inside a run directory: replace it with a real file or folder"
    )


def _status_record(
    state: str,
    step: int,
    reason: str | None = None,
    loss: float | None = None,
    warnings: list[str] | None = None,
) -> dict[str, Any]:
    """The content of status.json (a run without one reads as this record in state "pending")."""
    rec: dict[str, Any] = {
        "state": state,
        "step": int(step),
        "reason": reason,
        "loss": None if loss is None else float(loss),
        "warnings": warnings or [],
        "schema": SCHEMA,
    }
    if state == "running":  # who runs it: a reader can tell a live run from one whose process is gone
        rec.update(pid=os.getpid(), host=socket.gethostname())
    return rec


def environment(device: str, threads: int, deterministic: bool) -> dict[str, Any]:
    """env.json: versions, git sha + dirty flag, device, threads, determinism flags."""
    import torch

    import bnlab

    info: dict[str, Any] = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "numpy": np.__version__,
        "bnlab": bnlab.__version__,
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
        "device": device,
        "device_name": torch.cuda.get_device_name(torch.device(device))
        if device.startswith("cuda")
        else platform.processor() or platform.machine(),
        "threads": threads,
        "deterministic": deterministic,
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    info.update(git_info())
    return info


def git_info() -> dict[str, Any]:
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=5,
        )
        if sha.returncode == 0:
            return {"git_sha": sha.stdout.strip(), "git_dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        pass
    return {"git_sha": None, "git_dirty": None}


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
