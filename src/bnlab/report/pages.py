"""One folder per experiment beside the report (`bnlab report RUNS --pages`): <out>/<id>_<name>/README.md
(that experiment's section of report.md: verdict, table, notes, environment, the command) and its figures
as PNG, so a committed results folder links each experiment on its own (docs/results/<profile>/)."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

from bnlab.report.markdown import section_md
from bnlab.report.study import Study
from bnlab.store.files import atomic_write_text


def write_pages(study: Study, out: Path) -> list[Path]:
    """A folder per experiment that has runs; returns the README.md paths written."""
    written = []
    for sec in study.sections:
        if not len(sec.runs):
            continue
        folder = out / f"{sec.spec.id}_{sec.spec.name}"
        folder.mkdir(parents=True, exist_ok=True)
        figures = []
        for fo in sec.figures:
            if fo.png is not None:
                png = folder / fo.png.name
                shutil.copyfile(fo.png, png)
                fo = replace(fo, png=png, pdf=None)
            figures.append(fo)
        head = f"# {sec.spec.id} · {sec.spec.name} — {sec.profile} profile\n\n"
        body = section_md(replace(sec, figures=figures), folder).split("\n", 2)[2]  # drop the section heading
        path = folder / "README.md"
        atomic_write_text(path, head + body)
        path.chmod(0o644)
        written.append(path)
    return written
