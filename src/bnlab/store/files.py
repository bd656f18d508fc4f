"""Crash-safe file primitives: every file is written whole or not at all.

- `atomic_write_bytes/text/json`: write a temp file in the same folder, fsync, rename over the target,
  fsync the folder. A reader sees the old file or the new one, never a torn one.
- `append_line`: one JSON object per line, written with a single `write()` on an O_APPEND descriptor and
  fsynced, so a line is either fully there or absent (a SIGKILL cannot leave half a line except on a
  full disk; `read_jsonl` drops a torn last line and says so).
- A test-only fault hook (`BNLAB_FAULT=<point>:<n>`) kills the process at the n-th pass through a named
  point, so crash tests inject faults deterministically instead of by luck of timing.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import tempfile
from pathlib import Path
from typing import Any

from bnlab.errors import UserError

_FAULT_COUNTS: dict[str, int] = {}


@functools.cache
def _umask() -> int:
    """The process umask (read once; os.umask can only be read by setting it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def fault_point(name: str) -> None:
    """Test hook: with BNLAB_FAULT="name:n" the process SIGKILLs itself at the n-th call for `name`;
    with BNLAB_FAULT_ENOSPC="name:n" that call raises OSError(ENOSPC) instead (a full disk)."""
    full = os.environ.get("BNLAB_FAULT_ENOSPC")
    if full:
        point, _, count = full.partition(":")
        if point == name:
            key = "enospc:" + name
            _FAULT_COUNTS[key] = _FAULT_COUNTS.get(key, 0) + 1
            if _FAULT_COUNTS[key] >= int(count or 1):
                import errno

                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    spec = os.environ.get("BNLAB_FAULT")
    if not spec:
        return
    for item in spec.split(","):
        point, _, count = item.partition(":")
        if point == name:
            _FAULT_COUNTS[name] = _FAULT_COUNTS.get(name, 0) + 1
            if _FAULT_COUNTS[name] == int(count or 1):
                once = os.environ.get("BNLAB_FAULT_ONCE")  # a marker file: fire in one process only
                if once:
                    try:
                        os.close(os.open(once, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
                    except FileExistsError:
                        return
                os.kill(os.getpid(), signal.SIGKILL)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # the writer's pid is in the temp name, so a later write can tell a dead writer's debris from a
    # concurrent writer's file in flight (two sweeps writing one meta.json)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; the result should read like any new file
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            fault_point("atomic_write")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        for stale in path.parent.glob(f".{path.name}.*.tmp"):  # debris of writers killed mid-write
            if _writer_dead(stale.name[len(path.name) + 2 :].split(".", 1)[0]):
                stale.unlink(missing_ok=True)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(path.parent)


def _writer_dead(pid_text: str) -> bool:
    try:
        pid = int(pid_text)
    except ValueError:
        return False  # not one of ours
    return process_gone(pid)


def process_gone(pid: int, *, zombie: bool = False) -> bool:
    """Whether process `pid` of this machine has ended: no such process, or (with `zombie`) one that has
    exited but is not reaped yet. False for this process and for one we may not signal (another user's)."""
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return zombie and _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] == "Z"
    except OSError:
        return False


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=1, sort_keys=False, default=_default) + "\n")


def _default(x: Any) -> Any:
    if hasattr(x, "item"):
        return x.item()
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"not JSON serializable: {type(x).__name__}")


def dumps_line(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), default=_default, allow_nan=True)


def append_line(path: str | Path, obj: Any, point: str = "append_line") -> None:
    """Append one JSON line with a single write() + fsync (`point`: the fault-injection name of the call)."""
    append_lines(path, [obj], point)


def append_lines(path: str | Path, objs: list[Any], point: str = "append_line") -> None:
    """Append JSON lines with a single write() + one fsync (`point`: the fault-injection name of the call)."""
    path = Path(path)
    data = "".join(dumps_line(obj) + "\n" for obj in objs).encode("utf-8")
    fault_point(point)
    # O_NOFOLLOW: a line never lands in a file outside the run directory through a symlink
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as e:
        if path.is_symlink():
            raise LinkError(f"{path} is a symbolic link; bnlab does not write through links") from None
        raise e
    try:
        written = os.write(fd, data)
        if written != len(data):
            raise OSError(f"short write to {path}: {written} of {len(data)} bytes")
        os.fsync(fd)
    finally:
        os.close(fd)


def read_jsonl(path: str | Path) -> tuple[list[dict], bool]:
    """(rows, torn): the JSON-object rows of a JSON-lines file; `torn` is True when a partial last line
    was dropped. Lines that are not JSON objects (garbage in the middle) are left out here; `scan_jsonl`
    reports them."""
    rows, bad, torn = scan_jsonl(path)
    return rows, torn


def scan_jsonl(path: str | Path) -> tuple[list[dict], list[int], bool]:
    """(rows, bad, torn): JSON-object rows, the 1-based numbers of lines that are not JSON objects (not
    counting a torn last line), and whether the last line was torn (a partial write)."""
    path = Path(path)
    if not path.exists():
        return [], [], False
    rows: list[dict] = []
    bad: list[int] = []
    torn = False
    text = path.read_text(encoding="utf-8", errors="replace")
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except (json.JSONDecodeError, RecursionError):
            if i == len(lines) - 1 or all(not x.strip() for x in lines[i + 1 :]):
                torn = True
            else:
                bad.append(i + 1)
            continue
        if isinstance(row, dict):
            rows.append(row)
        else:
            bad.append(i + 1)
    return rows, bad, torn


class LinkError(UserError):
    """A run directory entry is a symbolic link (bnlab never reads, writes or deletes through one)."""


def quarantine(path: str | Path) -> Path:
    """Rename a damaged file aside (`<name>.corrupt-<n>` in the same folder) and return its new path;
    it is kept for inspection, and never read again as data."""
    path = Path(path)
    n = 1
    while True:
        target = path.with_name(f"{path.name}.corrupt-{n}")
        if not target.exists() and not target.is_symlink():
            break
        n += 1
    os.replace(path, target)
    _fsync_dir(path.parent)
    return target


def read_json(path: str | Path, default: Any = None) -> Any:
    path = Path(path)
    if not path.exists():
        return default
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError, OSError):
        return default
