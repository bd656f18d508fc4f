"""The run directory (schema in DESIGN.md; changing it needs a schema bump).

runs/<run_id>/
  config.yaml  env.json  status.json  metrics.jsonl  summary.json  probes/<probe>.{jsonl,npz}  ckpt/
"""

from __future__ import annotations

import hashlib
import io
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
    append_line,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    fault_point,
    process_gone,
    read_json,
    read_jsonl,
)

SCHEMA = 1
TERMINAL = ("complete", "diverged")
STATES = ("pending", "running", "complete", "diverged", "failed")


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
        return read_json(self.status_file, default=None) or _status_record("pending", 0)

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
        old = self.status()
        warns = list(dict.fromkeys([*(old.get("warnings") or []), *(warnings or [])]))
        atomic_write_json(self.status_file, _status_record(state, step, reason, loss, warns))

    def add_warning(self, text: str) -> None:
        st = self.status()
        self.set_status(
            st["state"], st.get("step", 0), reason=st.get("reason"), loss=st.get("loss"), warnings=[text]
        )

    # metrics
    def append_metric(self, row: dict[str, Any]) -> None:
        append_line(self.metrics, row, point="metrics_append")

    def read_metrics(self) -> list[dict[str, Any]]:
        return read_jsonl(self.metrics)[0]

    def truncate_metrics(self, up_to_step: int) -> int:
        """Keep metric lines with step <= up_to_step (deduplicated); returns how many were dropped.

        Called on resume: lines written after the checkpoint will be written again, identically."""
        rows, torn = read_jsonl(self.metrics)
        keep, seen = [], set()
        for r in rows:
            key = (r.get("step"), r.get("epoch"), r.get("split"))
            if r.get("step", 0) <= up_to_step and key not in seen:
                seen.add(key)
                keep.append(r)
        dropped = len(rows) - len(keep) + int(torn)
        if dropped or torn:
            from bnlab.store.files import dumps_line

            atomic_write_text(self.metrics, "".join(dumps_line(r) + "\n" for r in keep))
        return dropped


def _status_record(
    state: str,
    step: int,
    reason: str | None = None,
    loss: float | None = None,
    warnings: list[str] | None = None,
) -> dict[str, Any]:
    """The content of status.json (a run without one reads as this record in state "pending")."""
    return {
        "state": state,
        "step": int(step),
        "reason": reason,
        "loss": None if loss is None else float(loss),
        "warnings": warnings or [],
        "schema": SCHEMA,
    }


def step_key(step: int, key: str) -> str:
    """The key of a probe array measured at `step` in probes/<name>.npz (decoded by split_steps)."""
    return f"step{int(step)}/{key}"


def split_steps(arrays: dict[str, np.ndarray]) -> dict[int, dict[str, np.ndarray]]:
    """{step: {key: array}} of a probes/<name>.npz's arrays (keys "step<k>/<key>"); arrays without a step
    prefix (files written by hand) count as step 0."""
    out: dict[int, dict[str, np.ndarray]] = {}
    for k, v in arrays.items():
        head, _, rest = k.partition("/")
        if head.startswith("step") and head[4:].isdigit() and rest:
            out.setdefault(int(head[4:]), {})[rest] = v
        else:
            out.setdefault(0, {})[k] = v
    return out


def write_probe(run_dir: str | Path, name: str, result: Any, step: int) -> None:
    """Append a ProbeResult's table rows (+ "step") to probes/<name>.jsonl, its arrays into
    probes/<name>.npz under keys "step<step>/<key>" (the npz is rewritten atomically).

    Rows of an earlier write at the same step (a resumed run probing again) are replaced, not duplicated."""
    rd = Path(run_dir) / "probes"
    rd.mkdir(parents=True, exist_ok=True)
    table = result.table.copy()
    table["step"] = int(step)
    for k, v in (result.attrs or {}).items():
        if isinstance(v, str | int | float | bool) and k not in table.columns:
            table[k] = v
    rows = [
        {k: (None if _isna(v) else (v.item() if hasattr(v, "item") else v)) for k, v in r.items()}
        for r in table.to_dict(orient="records")
    ]
    jl = rd / f"{name}.jsonl"
    old, torn = read_jsonl(jl)
    if torn or any(r.get("step") == step for r in old):
        from bnlab.store.files import dumps_line

        kept = [r for r in old if r.get("step") != step]
        atomic_write_text(jl, "".join(dumps_line(r) + "\n" for r in kept + rows))
    else:
        for r in rows:
            append_line(jl, r, point="probe_append")
    if result.arrays:
        npz = rd / f"{name}.npz"
        arrays: dict[str, np.ndarray] = {}
        if npz.exists():
            try:
                with np.load(npz, allow_pickle=False) as z:
                    arrays = {k: z[k] for k in z.files}
            except (OSError, ValueError):
                arrays = {}
        for k, v in result.arrays.items():
            arrays[step_key(step, k)] = np.asarray(v)
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)  # type: ignore[arg-type]  # numpy's stub types **kwds as bool
        atomic_write_bytes(npz, buf.getvalue())


def _isna(v: Any) -> bool:
    try:
        import pandas as pd

        return bool(pd.isna(v)) if not isinstance(v, list | tuple | dict | np.ndarray) else False
    except (TypeError, ValueError):
        return False


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


class RunLock:
    """An exclusive lock on a run directory: `lock` holds "pid host time"; a lock whose process is dead
    (same host) is stale and is taken over. Use as a context manager; `acquire()` returns False when
    another live process holds it."""

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / "lock"
        self.held = False

    def acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                if self._stale():
                    try:
                        os.unlink(self.path)
                    except FileNotFoundError:
                        pass
                    continue
                return False
            with os.fdopen(fd, "w") as f:
                f.write(f"{os.getpid()} {socket.gethostname()} {time.time()}\n")
            self.held = True
            fault_point("lock_acquired")
            return True
        return False

    def _stale(self) -> bool:
        try:
            pid_s, host, *_ = self.path.read_text().split()
            pid = int(pid_s)
        except (OSError, ValueError):
            # unreadable or half-written lock: stale if older than a minute
            try:
                return time.time() - self.path.stat().st_mtime > 60
            except OSError:
                return True
        if host != socket.gethostname():
            return False  # another machine's lock: cannot check its process
        return process_gone(pid, zombie=True)

    def release(self) -> None:
        if self.held:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
            self.held = False

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
