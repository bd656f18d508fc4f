"""The committed cpu results carry their runs: `bnlab report docs/results/cpu/runs` regenerates an
experiment's committed verdict and numbers on any machine (here: E8, kernel alignment at ResNet-110)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bnlab.report import build_report

RESULTS = Path(__file__).resolve().parents[2] / "docs" / "results" / "cpu"


def verdict_and_numbers(sec: str) -> tuple[str, list[tuple[str, str]]]:
    verdict = re.search(r"\*\*Verdict: (\w+)\*\*", sec)
    assert verdict, sec[:400]
    rows = []
    for line in sec.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if (
            line.startswith("| ")
            and len(cells) >= 4
            and cells[0] not in ("quantity",)
            and not cells[0].startswith("---")
        ):
            rows.append((cells[0], cells[1]))
    return verdict.group(1), rows


@pytest.mark.parametrize("sid,folder", [("E8", "E8_kernel_alignment")])
def test_committed_runs_regenerate_the_committed_verdict_and_numbers(sid, folder, tmp_path):
    committed = (RESULTS / folder / "README.md").read_text(encoding="utf-8")
    build_report(RESULTS / "runs", out_dir=tmp_path, profile="cpu", only=[sid], pages=True)
    fresh = (tmp_path / folder / "README.md").read_text(encoding="utf-8")
    want, got = verdict_and_numbers(committed), verdict_and_numbers(fresh)
    assert got == want
    assert want[0] == "reproduced" and len(want[1]) >= 5
    assert (tmp_path / folder / f"{sid}_kernel_alignment.png").stat().st_size > 10_000


def test_committed_runs_hold_no_checkpoints_and_stay_small():
    runs = RESULTS / "runs"
    files = [p for p in runs.rglob("*") if p.is_file()]
    assert files and not [p for p in files if "ckpt" in p.parts or p.name == "lock"]
    assert sum(p.stat().st_size for p in files) < 20 * 2**20
