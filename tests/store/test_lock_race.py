"""Issue 14: the stale-lock takeover raced by 2 and 4 processes never gives two holders (200 rounds each)."""

from __future__ import annotations

import multiprocessing as mp
import socket
import subprocess
import sys

import pytest

from bnlab.store import RunLock


def _worker(run_dir: str, rounds: int, start, done, wins) -> None:  # noqa: ANN001 - mp primitives
    for r in range(rounds):
        start.wait()  # all workers race this round's acquire together
        lock = RunLock(run_dir)
        if lock.acquire():
            with wins.get_lock():
                wins[r] += 1
            done.wait()  # hold until every worker has tried
            lock.release()
        else:
            done.wait()


@pytest.mark.parametrize("procs", [2, 4])
def test_stale_lock_takeover_has_one_holder(tmp_path, procs):
    rounds = 200
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a pid that is gone: its lock is stale
    ctx = mp.get_context("fork")
    start, done = ctx.Barrier(procs + 1), ctx.Barrier(procs + 1)
    wins = ctx.Array("i", rounds)
    workers = [
        ctx.Process(target=_worker, args=(str(tmp_path), rounds, start, done, wins)) for _ in range(procs)
    ]
    for w in workers:
        w.start()
    for _ in range(rounds):
        (tmp_path / "lock").write_text(f"{dead.pid} {socket.gethostname()} 0\n")  # a stale lock each round
        start.wait()
        done.wait()
    for w in workers:
        w.join(60)
    assert all(w.exitcode == 0 for w in workers)
    assert list(wins) == [1] * rounds  # exactly one holder every round: never two, never none


def test_release_removes_only_its_own_lock(tmp_path):
    a = RunLock(tmp_path)
    assert a.acquire()
    (tmp_path / "lock").write_text(f"999999 {socket.gethostname()} 0 another\n")  # taken over elsewhere
    a.release()
    assert (tmp_path / "lock").exists()  # not ours any more: left alone
