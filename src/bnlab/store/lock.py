"""RunLock: one holder per run directory, across processes of one machine (and a shared filesystem).

The lock file `lock` holds "pid host time token". Taking it is `O_CREAT | O_EXCL`; a lock whose process is
dead (same host) is stale and may be taken over. Every step that reads or removes the lock file (the
stale check + takeover, and release) runs under `fcntl.flock` on a guard file `lock.guard` that is never
deleted, so two processes cannot both judge one stale lock and both take it (the old race: one deleted
the other's fresh lock between its stale check and its unlink), and `release()` removes the lock only
while it still holds this process's token.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import socket
import time
from pathlib import Path

from bnlab.store.files import fault_point, process_gone

GUARD = "lock.guard"


class RunLock:
    """An exclusive lock on a run directory. Use as a context manager; `acquire()` returns False when
    another live process holds it."""

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / "lock"
        self.guard = Path(run_dir) / GUARD
        self.held = False
        self._token = ""

    def acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with _Guard(self.guard):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW, 0o644)
            except FileExistsError:
                if not self._stale():
                    return False
                self.path.unlink(missing_ok=True)  # under the guard: nobody took it since the check
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW, 0o644)
            self._token = secrets.token_hex(8)
            with os.fdopen(fd, "w") as f:
                f.write(f"{os.getpid()} {socket.gethostname()} {time.time()} {self._token}\n")
                f.flush()
                os.fsync(f.fileno())
        self.held = True
        fault_point("lock_acquired")
        return True

    def _stale(self) -> bool:
        try:
            pid_s, host, *_ = self.path.read_text().split()
            pid = int(pid_s)
        except (OSError, ValueError):
            # unreadable or half-written lock (its writer died between create and write): stale after a minute
            try:
                return time.time() - self.path.stat().st_mtime > 60
            except OSError:
                return True
        if host != socket.gethostname():
            return False  # another machine's lock: cannot check its process
        return process_gone(pid, zombie=True)

    def owned(self) -> bool:
        """Whether the lock file still holds this holder's token."""
        try:
            return self.held and self.path.read_text().split()[3] == self._token
        except (OSError, IndexError):
            return False

    def release(self) -> None:
        if not self.held:
            return
        with _Guard(self.guard):
            if self.owned():  # never remove a lock another process holds
                self.path.unlink(missing_ok=True)
        self.held = False

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class _Guard:
    """fcntl.flock on the guard file, held for the with-block (released by the kernel if we die)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = -1

    def __enter__(self) -> _Guard:
        self.fd = os.open(self.path, os.O_CREAT | os.O_RDWR | os.O_NOFOLLOW, 0o644)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
        finally:
            os.close(self.fd)
