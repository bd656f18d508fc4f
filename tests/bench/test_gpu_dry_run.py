"""bench/gpu.sh --dry-run: the whole GPU script on the CPU at tiny sizes (every import, every section, the
output files), so that no GPU minute is spent on a typo; a failing section makes it exit non-zero."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).parents[2]
FILES = [
    "summary.txt",
    "env.txt",
    "correctness.txt",
    "train.json",
    "compile.json",
    "concurrency.json",
    "steady.json",
]


def _gpu_sh(out: Path, path_prefix: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "OUT": str(out),
        "PATH": f"{path_prefix}:{os.environ['PATH']}",
        "CUDA_VISIBLE_DEVICES": "",
    }
    return subprocess.run(
        ["bash", str(REPO / "bench" / "gpu.sh"), "--dry-run"],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )


# In CI (not slow): ~35 CPU-s in all, one thread per process, measured by the script itself (summary.txt)
def test_dry_run_runs_every_section_on_the_cpu(tmp_path):
    out = tmp_path / "out"
    r = _gpu_sh(out, str(Path(sys.executable).parent))  # this interpreter is the `python` of the script
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip().splitlines()[-1] == str(out)  # the result path, last on stdout
    for name in FILES:
        assert (out / name).stat().st_size > 0, name
    summary = (out / "summary.txt").read_text().splitlines()
    assert [line.split()[0] for line in summary] == [
        "env", "correctness", "train", "compile", "concurrency", "steady", "estimate",
    ]  # fmt: skip
    assert all(" rc=0 " in line and " CPU-s " in line for line in summary)
    check = (out / "correctness.txt").read_text()
    assert check.count("trajectory") == 3 and "FAILED" not in check and "host syncs" in check
    train_json = json.loads((out / "train.json").read_text())
    assert train_json["dry_run"] is True  # labelled: its numbers are not measurements
    train = train_json["results"][0]
    assert train["depth"] == 8 and train["bnlab_img_s"] > 0 and train["usual_img_s"] > 0
    assert json.loads((out / "compile.json").read_text())["results"][0]["compile"] == "reduce-overhead"
    assert [r["runs"] for r in json.loads((out / "concurrency.json").read_text())["rows"]] == [1, 2]
    assert "measured:" in (out / "estimate.txt").read_text()  # the projection used the measured table


def test_a_failing_section_makes_it_exit_non_zero(tmp_path):
    """Every section fails at once when `python` is broken; each failure is named and the exit code is 1."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "python").write_text("#!/bin/sh\necho 'broken python' >&2\nexit 3\n")
    (fake / "python").chmod(0o755)
    r = _gpu_sh(tmp_path / "out", str(fake))
    assert r.returncode == 1
    assert "failed sections: env correctness train compile concurrency steady estimate" in r.stderr
    assert r.stdout.strip().splitlines()[-1] == str(tmp_path / "out")
