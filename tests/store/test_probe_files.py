"""Probe files written append-only (bnlab.store.probe_files): N measured steps write O(N) bytes, read
nothing back, and the one reader returns exactly the arrays written, from the per-step layout, the single
npz of older runs, or both."""

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from bnlab.probes.result import ProbeResult
from bnlab.store import probe_files
from bnlab.store.probe_files import ProbeWriter, read_probe_arrays, step_key, write_probe
from bnlab.store.runset import RunSet


def _result(step: int, rng: np.random.Generator) -> tuple[ProbeResult, dict[str, np.ndarray]]:
    arrays = {f"layer{i}/counts": rng.integers(0, 100, 50) for i in range(4)}
    arrays["layer0/mean"] = rng.standard_normal(16)
    rows = [{"probe": "p", "layer": f"layer{i}", "metric": "m", "value": float(step + i)} for i in range(4)]
    return ProbeResult.from_rows(rows, arrays, norm_stats="batch"), arrays


@pytest.fixture
def counted(monkeypatch):
    """Bytes and files written, and .jsonl scans, by the probe writer (through its three write paths)."""
    log = {"bytes": [], "files": [], "scans": 0}
    real_atomic, real_append, real_scan = (
        probe_files.atomic_write_bytes,
        probe_files.append_lines,
        probe_files.scan_jsonl,
    )

    def atomic(path, data):
        log["bytes"].append(len(data))
        log["files"].append(os.path.basename(path))
        real_atomic(path, data)

    def append(path, objs, point="append_line"):
        log["bytes"].append(sum(len(probe_files.dumps_line(o)) + 1 for o in objs))
        log["files"].append(os.path.basename(path))
        real_append(path, objs, point)

    def scan(path):
        log["scans"] += 1
        return real_scan(path)

    monkeypatch.setattr(probe_files, "atomic_write_bytes", atomic)
    monkeypatch.setattr(probe_files, "append_lines", append)
    monkeypatch.setattr(probe_files, "scan_jsonl", scan)
    return log


def test_n_steps_write_linear_bytes_and_read_nothing_back(tmp_path, counted):
    rng = np.random.default_rng(0)
    writer = ProbeWriter(tmp_path)
    sent = {}
    per_step = []
    for step in range(0, 400, 10):
        before = sum(counted["bytes"])
        res, sent[step] = _result(step, rng)
        writer.write("p", res, step)
        per_step.append(sum(counted["bytes"]) - before)
    # every step writes its rows once and its own arrays' file once: no file is written twice
    npz = [f for f in counted["files"] if f.endswith(".npz")]
    assert len(npz) == len(set(npz)) == 40
    assert counted["files"].count("p.jsonl") == 40
    # the bytes of the 40th step are those of the 1st (same-sized results), not 40 times them
    assert max(per_step) <= 1.5 * min(per_step)
    assert counted["scans"] == 1  # the .jsonl is scanned once (it did not exist yet), never read back
    by_step, notes = read_probe_arrays(tmp_path / "probes", "p")
    assert not notes and sorted(by_step) == sorted(sent)
    for step, arrays in sent.items():
        assert sorted(by_step[step]) == sorted(arrays)
        for k, v in arrays.items():
            np.testing.assert_array_equal(by_step[step][k], v)
            assert by_step[step][k].dtype == v.dtype


def test_rows_written_by_someone_else_are_read_again(tmp_path, counted):
    rng = np.random.default_rng(1)
    writer = ProbeWriter(tmp_path)
    writer.write("p", _result(0, rng)[0], 0)
    writer.write("p", _result(5, rng)[0], 5)
    assert counted["scans"] == 1
    write_probe(tmp_path, "p", _result(5, rng)[0], step=5)  # another writer replaces step 5's rows
    writer.write("p", _result(5, rng)[0], 5)  # ours sees the file changed, scans it, replaces step 5 again
    rows = pd.read_json(tmp_path / "probes" / "p.jsonl", lines=True)
    assert rows.groupby("step").size().to_dict() == {0: 4, 5: 4}


def test_same_step_replaces_its_rows_and_arrays(tmp_path):
    rng = np.random.default_rng(2)
    writer = ProbeWriter(tmp_path)
    writer.write("p", _result(0, rng)[0], 0)
    writer.write("p", _result(3, rng)[0], 3)
    res, arrays = _result(3, rng)
    writer.write("p", res, 3)  # a resumed run measuring step 3 again
    rows = pd.read_json(tmp_path / "probes" / "p.jsonl", lines=True)
    assert rows.groupby("step").size().to_dict() == {0: 4, 3: 4}
    by_step, _ = read_probe_arrays(tmp_path / "probes", "p")
    np.testing.assert_array_equal(by_step[3]["layer0/mean"], arrays["layer0/mean"])


def test_old_single_npz_is_read_and_kept_whole(tmp_path):
    """A probe with the single probes/<name>.npz of schema <= 2 keeps writing into it; the reader returns the
    same arrays from either layout and merges a folder holding both (the per-step file wins)."""
    rng = np.random.default_rng(3)
    probes = tmp_path / "probes"
    probes.mkdir()
    old = {step_key(s, "a"): rng.standard_normal(5) for s in (0, 10)}
    np.savez_compressed(probes / "p.npz", **old)
    res, arrays = _result(20, rng)
    write_probe(tmp_path, "p", res, step=20)
    assert sorted(p.name for p in probes.glob("*.npz")) == ["p.npz"]
    by_step, notes = read_probe_arrays(probes, "p")
    assert sorted(by_step) == [0, 10, 20] and not notes
    np.testing.assert_array_equal(by_step[10]["a"], old["step10/a"])
    np.testing.assert_array_equal(by_step[20]["layer0/mean"], arrays["layer0/mean"])
    newer = rng.standard_normal(5)
    np.savez_compressed(probes / "p.step10.npz", **{"step10/a": newer, "step10/b": newer})
    by_step, _ = read_probe_arrays(probes, "p")
    np.testing.assert_array_equal(by_step[10]["a"], newer)
    assert sorted(by_step[10]) == ["a", "b"]
    # a probe whose name starts like another's is not mixed in
    np.savez_compressed(probes / "p_other.step10.npz", **{"step10/x": newer})
    assert "x" not in read_probe_arrays(probes, "p")[0][10]


def test_runset_reads_both_layouts_and_notes_a_damaged_step(tmp_path):
    rng = np.random.default_rng(4)
    new, old = tmp_path / "new", tmp_path / "old"
    sent = {}
    for d in (new, old):
        d.mkdir()
        (d / "config.yaml").write_text("kind: monitor\n")
    for step in (0, 10, 20):
        res, sent[step] = _result(step, rng)
        write_probe(new, "p", res, step=step)
    (old / "probes").mkdir()  # the same arrays in the single npz of a schema-2 run
    np.savez_compressed(
        old / "probes" / "p.npz", **{step_key(s, k): v for s, a in sent.items() for k, v in a.items()}
    )
    runs = RunSet.open(tmp_path)
    for _, row in runs.runs.iterrows():
        by_step = runs.array_steps(row, "p")
        assert sorted(by_step) == [0, 10, 20]
        for s, arrays in sent.items():
            for k, v in arrays.items():
                np.testing.assert_array_equal(by_step[s][k], v)
        np.testing.assert_array_equal(runs.arrays(row, "p")["layer0/mean"], sent[0]["layer0/mean"])
    damaged = new / "probes" / "p.step10.npz"
    damaged.write_bytes(damaged.read_bytes()[:40])
    runs = RunSet.open(tmp_path)
    row = runs.runs[runs.runs["run_id"] == "new"].iloc[0]
    assert sorted(runs.array_steps(row, "p")) == [0, 20]  # the other steps are kept
    assert any("p.step10.npz unreadable" in n for n in runs.notes)


def test_writer_killed_mid_write_leaves_earlier_steps_whole(tmp_path):
    """SIGKILL inside the atomic write of step 20's arrays: no step-20 file (only the temp file, which a
    later write cleans), steps 0 and 10 read back intact."""
    code = f"""
import os, numpy as np
from bnlab.probes.result import ProbeResult
from bnlab.store.probe_files import write_probe
for step in (0, 10, 20):
    if step == 20:
        os.environ["BNLAB_FAULT"] = "atomic_write:1"
    res = ProbeResult.from_rows([{{"probe": "p", "layer": "a", "metric": "m", "value": 1.0}}],
                                {{"a": np.full(3, float(step))}}, norm_stats="none")
    write_probe({str(tmp_path)!r}, "p", res, step=step)
"""
    assert subprocess.run([sys.executable, "-c", code]).returncode == -9
    by_step, notes = read_probe_arrays(tmp_path / "probes", "p")
    assert sorted(by_step) == [0, 10] and not notes
    np.testing.assert_array_equal(by_step[10]["a"], np.full(3, 10.0))
    assert not (tmp_path / "probes" / "p.step20.npz").exists()
