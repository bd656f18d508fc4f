"""The reproduction report: `build_report(runs_root)` -> RUNS/report/report.html (self-contained: figures as
base64 PNG data URIs, no external reference), report.md and figures/<id>_<name>.{png,pdf}; and
`build_comparison(a, b)` -> the same figures and verdicts of two runs roots side by side.

Each experiment is its spec (experiments/<ID>_<name>.yaml: the paper's values with provenance and the
verdict rule, by quantity key) and its analysis (bnlab.analyses.<id>_<name>: our numbers and figures, read
through bnlab.store.RunSet); bnlab.report.study walks spec -> analysis, bnlab.report.rules interprets the
rules, html/markdown render (style: style.mplstyle).
"""

from __future__ import annotations

from pathlib import Path

from bnlab.errors import UserError

__all__ = ["build_report", "build_comparison"]


def build_report(
    runs_root: str | Path,
    out_dir: str | Path | None = None,
    profile: str | None = None,
    command: str | None = None,
    *,
    only: list[str] | None = None,
    pages: bool = False,
) -> Path:
    """Write report.html, report.md and figures/ for the runs under `runs_root`; returns report.html's path.

    profile: which runs to report (their meta.json tags "E1/<profile>"); default: reproduce.json's, else the
    most common tag. command: the command shown to regenerate it (default: reproduce.json's). only: experiment
    ids or names to include (default: every spec). pages: also one folder per experiment with runs
    (<id>_<name>/README.md + its figures; bnlab.report.pages)."""
    from bnlab.report.html import render_report
    from bnlab.report.markdown import render_markdown
    from bnlab.report.study import collect
    from bnlab.store.files import atomic_write_text, fault_point

    out = Path(out_dir) if out_dir is not None else Path(runs_root) / "report"
    study = collect(runs_root, out / "figures", profile=profile, command=command, only=only)
    fault_point("report")  # test hook: a kill between the figures and the pages
    path = out / "report.html"
    atomic_write_text(path, render_report(study))
    atomic_write_text(out / "report.md", render_markdown(study, out))
    _readable(path, out / "report.md")
    if pages:
        from bnlab.report.pages import write_pages

        write_pages(study, out)
    return path


def build_comparison(
    runs_a: str | Path,
    runs_b: str | Path,
    out_dir: str | Path | None = None,
    profile_a: str | None = None,
    profile_b: str | None = None,
    *,
    only: list[str] | None = None,
) -> Path:
    """compare.html with the figures and verdicts of two runs roots (profiles, machines or code versions)
    side by side; returns its path (default folder: RUNS_A/compare)."""
    from bnlab.report.html import render_compare
    from bnlab.report.study import collect
    from bnlab.store.files import atomic_write_text

    if Path(runs_a).resolve() == Path(runs_b).resolve() and profile_a == profile_b:
        raise UserError("compare needs two different runs roots (or two --profile values for one root)")
    out = Path(out_dir) if out_dir is not None else Path(runs_a) / "compare"
    a = collect(runs_a, out / "figures", profile=profile_a, stem_prefix="A_", only=only)
    b = collect(runs_b, out / "figures", profile=profile_b, stem_prefix="B_", only=only)
    path = out / "compare.html"
    atomic_write_text(path, render_compare(a, b, (str(runs_a), str(runs_b))))
    _readable(path)
    return path


def _readable(*paths: Path) -> None:
    """A report is for sharing: rw-r--r-- (the atomic writer creates its files private)."""
    for p in paths:
        p.chmod(0o644)
