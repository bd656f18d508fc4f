"""report.md: the same content as report.html in Markdown, figures linked as figures/<id>_<name>.png."""

from __future__ import annotations

import os
from pathlib import Path

from bnlab.report.html import env_line, fmt, report_runs
from bnlab.report.study import SMOKE_BANNER, Section, Study
from bnlab.report.untagged import untagged_md


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def section_md(sec: Section, out_dir: Path) -> str:
    s = sec.spec
    lines = [f"## {s.id} · {s.name}", ""]
    if sec.smoke:
        lines += [f"> **{SMOKE_BANNER}**", ""]
    lines += [
        f"**Claim** ({sec.claim_source}): {s.claim}",
        "",
        f"**Verdict: {sec.verdict.verdict}** — {sec.verdict.reason}",
        "",
        f"Profile `{sec.profile}`: {sec.tests or '—'} (estimated cost {fmt(sec.cost_s)} s).",
        "",
        f"**The paper's figure.** {sec.paper_figure}",
        "",
    ]
    if not len(sec.runs):
        lines += [
            f"No runs of {s.id} under the {sec.profile} profile in this runs root"
            + (f" ({sec.pending} planned, not started)." if sec.pending else "."),
            "",
        ]
    for fo in sec.figures:
        if fo.error:
            what = "not drawn" if fo.missing_data else "failed"
            lines += [f"*Figure `{fo.name}` {what}: {fo.error}*", ""]
        elif fo.png is not None:
            rel = os.path.relpath(fo.png, out_dir)
            lines += [f"![{fo.name}]({rel})", ""]
        cap = [f"`{fo.name}` — {fo.description}"] + fo.notes
        lines += ["*" + _cell(" · ".join(cap)) + "*", ""]
    lines += ["| quantity | ours | paper | source |", "|---|---:|---:|---|"]
    lines += [
        f"| {_cell(r.quantity)} | {fmt(r.ours)} | {_cell(fmt(r.paper))} | {_cell(r.source)} |"
        for r in sec.rows
    ]
    lines.append("")
    lines += [f"- {n}" for n in sec.notes]
    if sec.notes:
        lines.append("")
    if len(sec.runs):
        counts = ", ".join(f"{n} {st}" for st, n in sec.runs["state"].value_counts().to_dict().items())
        lines += [
            f"Runs: {len(sec.runs)} ({counts})"
            + (f"; {sec.pending} planned, not started" if sec.pending else ""),
            "",
        ]
        for _, row in sec.runs[sec.runs["state"] != "complete"].iterrows():
            why = row.get("reason") if isinstance(row.get("reason"), str) else ""
            lines.append(f"- `{row['run_id']}`: {row['state']} at step {row.get('step')} {why}".rstrip())
        lines.append("")
    lines += [f"Environment: {env_line(sec.env)}", "", f"Regenerate: `{sec.command}`", ""]
    return "\n".join(lines)


def render_markdown(study: Study, out_dir: Path) -> str:
    lines = [f"# Understanding Batch Normalization — reproduction report ({study.profile})", ""]
    if study.profile == "smoke":
        lines += [f"> **{SMOKE_BANNER}**", ""]
    lines += [
        f"Runs root: `{study.root}`",
        "",
        f"Regenerate everything: `{study.command}`",
        "",
        f"Environment: {env_line(study.env, report_runs(study))}",
        "",
        "| experiment | runs | verdict | reason |",
        "|---|---:|---|---|",
    ]
    for sec in study.sections:
        lines.append(
            f"| {sec.spec.id} {sec.spec.name} | {len(sec.runs)} | {sec.verdict.verdict} | {_cell(sec.verdict.reason)} |"
        )
    lines.append("")
    for sec in study.sections:
        lines.append(section_md(sec, out_dir))
    lines.append(untagged_md(study.untagged_runs, out_dir))
    return "\n".join(lines)
