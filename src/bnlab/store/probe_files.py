"""Probe results in a run directory: probes/<name>.jsonl (table rows + "step") and the arrays, written
append-only, so N measured steps cost O(N) bytes written, not O(N²).

Array layout (run directory schema 3):
  probes/<name>.step<k>.npz   the arrays measured at step k, keys "step<k>/<key>" (`step_key`); one file
                              per measured step, written once, atomically (temp file + rename), never
                              rewritten unless step k is measured again (a resumed run), which replaces it
  probes/<name>.npz           schema <= 2: every step's arrays in one file (rewritten at every step). Read
                              as before; a probe that already has one keeps writing into it (read, merged,
                              rewritten), so one probe's arrays are never split between the two layouts
                              by bnlab itself; a reader merges both anyway, the per-step files winning.

`ProbeWriter` keeps what it learnt of each probes/<name>.jsonl (its steps, size and mtime), so appending a
step's rows reads nothing back while the file is as it left it; `write_probe` is its one-call form (scans
the .jsonl once per call: resumed runs, tasks writing once). `read_probe_arrays` is the one reader of the
arrays (RunSet.array_steps).
"""

from __future__ import annotations

import io
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from bnlab.store.files import (
    append_lines,
    atomic_write_bytes,
    atomic_write_text,
    dumps_line,
    quarantine,
    scan_jsonl,
)

__all__ = ["ProbeWriter", "write_probe", "read_probe_arrays", "split_steps", "step_key", "step_file"]


def step_key(step: int, key: str) -> str:
    """The key of a probe array measured at `step` (decoded by split_steps)."""
    return f"step{int(step)}/{key}"


def step_file(probes: Path, name: str, step: int) -> Path:
    """probes/<name>.step<k>.npz: the arrays of probe `name` measured at `step` (schema 3)."""
    return probes / f"{name}.step{int(step)}.npz"


def split_steps(arrays: dict[str, np.ndarray]) -> dict[int, dict[str, np.ndarray]]:
    """{step: {key: array}} of a probe npz's arrays (keys "step<k>/<key>"); arrays without a step prefix
    (files written by hand) count as step 0."""
    out: dict[int, dict[str, np.ndarray]] = {}
    for k, v in arrays.items():
        head, _, rest = k.partition("/")
        if head.startswith("step") and head[4:].isdigit() and rest:
            out.setdefault(int(head[4:]), {})[rest] = v
        else:
            out.setdefault(0, {})[k] = v
    return out


class ProbeWriter:
    """Writes probe results into one run directory (module docstring). Rows of an earlier write at the same
    step (a resumed run probing again) are replaced, not duplicated; lines of probes/<name>.jsonl that are
    not rows are set aside (quarantine) with a warning in status.json."""

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.probes = self.run_dir / "probes"
        # per probe: (inode, size, mtime_ns) of its .jsonl after our last write, and the steps it holds
        self._known: dict[str, tuple[tuple[int, int, int], set[Any]]] = {}

    def write(self, name: str, result: Any, step: int) -> None:
        step = int(step)
        self.probes.mkdir(parents=True, exist_ok=True)
        self._write_rows(name, _rows(result, step), step)
        if result.arrays:
            arrays = {step_key(step, k): np.asarray(v) for k, v in result.arrays.items()}
            legacy = self.probes / f"{name}.npz"
            if legacy.exists():
                arrays = {**_read_npz_keeping(legacy, self.run_dir), **arrays}
                atomic_write_bytes(legacy, _npz_bytes(arrays))
            else:
                atomic_write_bytes(step_file(self.probes, name, step), _npz_bytes(arrays))

    def _write_rows(self, name: str, rows: list[dict[str, Any]], step: int) -> None:
        jl = self.probes / f"{name}.jsonl"
        known = self._known.get(name)
        if known is not None and known[0] == _stamp(jl):
            steps, bad, torn, old = known[1], [], False, None  # the file is as we left it: nothing to read
        else:
            old, bad, torn = scan_jsonl(jl)
            steps = {r.get("step") for r in old}
        if bad:
            moved = quarantine(jl)
            _warn(
                self.run_dir,
                f"probes/{name}.jsonl had {len(bad)} line(s) that are not rows; set aside as {moved.name}",
            )
        if torn or bad or step in steps:
            if old is None:
                old = scan_jsonl(jl)[0]
            kept = [r for r in old if r.get("step") != step]
            atomic_write_text(jl, "".join(dumps_line(r) + "\n" for r in kept + rows))
            steps = {r.get("step") for r in kept}
        else:
            append_lines(jl, rows, point="probe_append")  # one write + one fsync for the step's rows
        self._known[name] = (_stamp(jl), steps | {step})


def write_probe(run_dir: str | Path, name: str, result: Any, step: int) -> None:
    """Append a ProbeResult's table rows (+ "step") to probes/<name>.jsonl and write its arrays
    (probes/<name>.step<step>.npz; module docstring). A step written again replaces its rows and arrays."""
    ProbeWriter(run_dir).write(name, result, step)


def read_probe_arrays(probes: str | Path, name: str) -> tuple[dict[int, dict[str, np.ndarray]], list[str]]:
    """({step: {key: array}}, notes) of probe `name` under a run's probes/ folder, from both layouts
    (module docstring); a file that cannot be read is left out and named in `notes`, the others kept."""
    probes = Path(probes)
    files: list[tuple[int, Path]] = []
    legacy = probes / f"{name}.npz"
    if legacy.is_file():
        files.append((-1, legacy))
    if probes.is_dir():
        pattern = re.compile(re.escape(name) + r"\.step(\d+)\.npz")
        for entry in os.scandir(probes):
            m = pattern.fullmatch(entry.name)
            if m and entry.is_file(follow_symlinks=False):
                files.append((int(m.group(1)), Path(entry.path)))
    merged: dict[str, np.ndarray] = {}
    notes: list[str] = []
    for _, path in sorted(files):
        try:
            with np.load(path, allow_pickle=False) as z:
                merged.update({k: z[k] for k in z.files})
        except Exception as e:  # noqa: BLE001 - not an npz, truncated, bit-flipped, an object array
            notes.append(f"{path.name} unreadable ({type(e).__name__}), left out")
    return split_steps(merged), notes


def _rows(result: Any, step: int) -> list[dict[str, Any]]:
    table = result.table.copy()
    table["step"] = int(step)
    for k, v in (result.attrs or {}).items():
        if isinstance(v, str | int | float | bool) and k not in table.columns:
            table[k] = v
    return [
        {k: (None if _isna(v) else (v.item() if hasattr(v, "item") else v)) for k, v in r.items()}
        for r in table.to_dict(orient="records")
    ]


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)  # type: ignore[arg-type]  # numpy's stub types **kwds as bool
    return buf.getvalue()


def _stamp(path: Path) -> tuple[int, int, int]:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return (0, -1, 0)
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _warn(run_dir: Path, text: str) -> None:
    from bnlab.store.rundir import RunDir  # rundir re-exports this module's writers

    RunDir(run_dir).add_warning(text)


def _read_npz_keeping(npz: Path, run_dir: Path) -> dict[str, np.ndarray]:
    """The arrays of an existing probe .npz that can be read safely. A damaged file (truncated, bit-flipped,
    an object array that would need pickle) is set aside (quarantine) with a warning naming it; its
    readable arrays are kept, so earlier steps are not silently dropped."""
    arrays: dict[str, np.ndarray] = {}
    damaged = False
    try:
        with np.load(npz, allow_pickle=False) as z:
            for k in z.files:
                try:
                    arrays[k] = z[k]
                except Exception:  # noqa: BLE001 - any unreadable member (zlib.error, BadZipFile, pickle)
                    damaged = True
    except Exception:  # noqa: BLE001 - not an npz at all (BadZipFile, EOFError, OSError, ValueError)
        damaged = True
    if damaged:
        moved = quarantine(npz)
        _warn(
            run_dir,
            f"probes/{npz.name} was damaged; set aside as {moved.name} ({len(arrays)} readable array(s) kept)",
        )
    return arrays


def _isna(v: Any) -> bool:
    try:
        import pandas as pd

        return bool(pd.isna(v)) if not isinstance(v, list | tuple | dict | np.ndarray) else False
    except (TypeError, ValueError):
        return False
