"""One self-contained HTML file: inline CSS, figures as base64 PNG data URIs, no script, no external URL."""

from __future__ import annotations

import datetime as _dt
import html
import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

import bnlab
from bnlab.report.study import SMOKE_BANNER, FigureOut, Section, Study
from bnlab.report.untagged import untagged_html
from bnlab.store.runset import RunSet

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif;margin:0 auto;max-width:1280px;
padding:1em 2em;color:#1b1b1b;line-height:1.4}
h1{margin-bottom:.2em} h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em} th,td{border:1px solid #ccc;padding:.25em .5em;
text-align:left;vertical-align:top} th{background:#f3f3f3}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.banner{background:#fff3cd;border:2px solid #d39e00;color:#6b4e00;padding:.5em 1em;font-weight:600;margin:.5em 0}
.verdict{display:inline-block;padding:.1em .6em;border-radius:.3em;font-weight:700;color:#fff}
.v-reproduced{background:#1a7f37}.v-partly{background:#b08800}.v-not{background:#cf222e}.v-inconclusive{background:#6e7781}
.fig{display:flex;gap:1.5em;align-items:flex-start;margin:1em 0;flex-wrap:wrap}
.fig img{max-width:820px;width:100%;border:1px solid #eee}
.fig .desc{flex:1;min-width:260px;font-size:.9em}
.caption{font-size:.85em;color:#444} .nodata{background:#f6f8fa;border:1px dashed #999;padding:.5em} .error{background:#ffebe9;border:1px solid #cf222e;padding:.5em;color:#82071e}
.muted{color:#666;font-size:.85em} code,pre{background:#f6f8fa;padding:.1em .3em;border-radius:3px;font-size:.85em}
pre{padding:.6em;overflow-x:auto;white-space:pre-wrap}
.cols{display:grid;grid-template-columns:1fr 1fr;gap:1.5em}
"""

E = html.escape


def fmt(v: Any) -> str:
    """A number for a table cell (3 significant digits, scientific beyond 1e4 / below 1e-3); '—' for none."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    if isinstance(v, bool) or not isinstance(v, int | float):
        return str(v)
    if v == 0:
        return "0"
    a = abs(float(v))
    return f"{v:.3g}" if 1e-3 <= a < 1e4 else f"{v:.2e}"


def verdict_badge(v: str) -> str:
    return f'<span class="verdict v-{E(v)}">{E(v)}</span>'


def report_runs(study: Study) -> int:
    """How many distinct runs the report's sections and its untagged section show."""
    ids: set[str] = set()
    for sec in study.sections:
        ids |= {str(r) for r in sec.runs.get("run_id", [])}
    return len(ids) + int(study.untagged or 0)


def env_line(envs: Sequence[dict[str, Any]], total: int | None = None) -> str:
    """The environments of some runs in one line: shared fields once, then each git commit with its run count;
    with `total` (the runs shown), also how many of them have no env.json."""
    if not envs:
        return "no env.json in these runs" + (f" ({total} run(s))" if total else "")
    with_env = sum(int(e.get("runs") or 0) for e in envs)
    missing = f"{total - with_env} of {total} run(s) without env.json; " if total and total > with_env else ""
    groups: dict[str, list[dict[str, Any]]] = {}
    for e in envs:
        dev = e.get("device_name") or e.get("device")
        key = (
            f"device {e.get('device')} ({dev}), {e.get('threads')} threads; python {e.get('python')}, "
            f"torch {e.get('torch')}, numpy {e.get('numpy')}, bnlab {e.get('bnlab')}, cuda {e.get('cuda')}"
        )
        groups.setdefault(key, []).append(e)
    out = []
    for key, es in groups.items():
        shas = ", ".join(
            f"{str(e.get('git_sha') or 'unknown')[:10]}{' (dirty)' if e.get('git_dirty') else ''} "
            f"[{e.get('runs', '?')} run(s) with this env.json]"
            for e in es
        )
        out.append(f"{key}; git {shas}")
    return missing + "; ".join(out)


def runs_table(sec: Section) -> str:
    r = sec.runs
    if not len(r):
        return "<p>No runs.</p>"
    data = RunSet(r)
    labels = data.labels(r)
    head = (
        "<tr><th>run</th><th>configuration</th><th>state</th><th>step</th><th>result</th><th>reason</th></tr>"
    )
    body = []
    for i, (_, row) in enumerate(r.iterrows()):
        result = []
        for k, name in (
            ("summary.test_acc", "test acc"),
            ("summary.max_stable_lr", "max stable lr"),
            ("summary.train_loss", "train loss"),
        ):
            if k in row.index and pd.notna(row[k]) and row[k] is not None:
                result.append(f"{name} {fmt(row[k])}")
        reason = row.get("reason") if isinstance(row.get("reason"), str) else ""
        body.append(
            f"<tr><td><code>{E(str(row['run_id']))}</code></td><td>{E(labels.iloc[i])}</td>"
            f"<td>{E(str(row['state']))}</td><td class='num'>{E(fmt(row.get('step')))}</td>"
            f"<td>{E(', '.join(result))}</td><td>{E(reason)}</td></tr>"
        )
    counts = r["state"].value_counts().to_dict()
    summary = ", ".join(f"{n} {s}" for s, n in counts.items())
    return f"<p class='muted'>{len(r)} runs: {E(summary)}</p><table>{head}{''.join(body)}</table>"


def values_table(
    rows: Sequence[Any], ours_headers: Sequence[str] = ("ours",), ours: Sequence[Sequence[Any]] | None = None
) -> str:
    heads = "".join(f"<th>{E(h)}</th>" for h in ours_headers)
    out = [f"<table><tr><th>quantity</th>{heads}<th>paper</th><th>source</th></tr>"]
    for i, row in enumerate(rows):
        vals = ours[i] if ours is not None else [row.ours]
        cells = "".join(f"<td class='num'>{E(fmt(v))}</td>" for v in vals)
        out.append(
            f"<tr><td>{E(row.quantity)}</td>{cells}<td class='num'>{E(fmt(row.paper))}</td>"
            f"<td>{E(row.source)}</td></tr>"
        )
    out.append("</table>")
    return "".join(out)


def figure_block(fo: FigureOut, paper_figure: str, smoke: bool) -> str:
    if fo.error and fo.missing_data:
        img = f"<div class='nodata'>figure <b>{E(fo.name)}</b> not drawn: {E(fo.error)}</div>"
    elif fo.error:
        img = f"<div class='error'>figure <b>{E(fo.name)}</b> failed: {E(fo.error)}</div>"
    else:
        img = f"<img alt='{E(fo.name)}' src=\"{fo.data_uri}\">"
    cap = [f"<b>{E(fo.name)}</b> — {E(fo.description)}"]
    if smoke:
        cap.append(E(SMOKE_BANNER))
    cap += [E(n) for n in fo.notes]
    caption = "<div class='caption'>" + "<br>".join(cap) + "</div>"
    # each figure's own caption; the paper's figure is described once per section (section_html)
    desc = f"<div class='desc'>{caption}</div>"
    return f"<div class='fig'><div>{img}</div>{desc}</div>"


def section_html(sec: Section) -> str:
    s = sec.spec
    parts = [f"<h2 id='{E(s.id)}'>{E(s.id)} · {E(s.name)}</h2>"]
    if sec.smoke:
        parts.append(f"<div class='banner'>{E(SMOKE_BANNER)}</div>")
    parts.append(f"<p><b>Claim</b> ({E(sec.claim_source)}): {E(s.claim)}</p>")
    parts.append(f"<p><b>Verdict:</b> {verdict_badge(sec.verdict.verdict)} {E(sec.verdict.reason)}</p>")
    parts.append(
        f"<p class='muted'>Profile <b>{E(sec.profile)}</b>: {E(sec.tests or '—')} (estimated cost "
        f"{fmt(sec.cost_s)} s).</p>"
    )
    if not len(sec.runs):
        extra = f" {sec.pending} planned run(s) not started yet." if sec.pending else ""
        parts.append(
            f"<p><b>No runs of {E(s.id)} under the {E(sec.profile)} profile in this runs root.</b>{E(extra)} "
            f"The paper's figure: {E(sec.paper_figure)}</p>"
        )
    if len(sec.runs):
        parts.append(f"<p><b>The paper's figure.</b> {E(sec.paper_figure)}</p>")
    for fo in sec.figures:
        parts.append(figure_block(fo, sec.paper_figure, sec.smoke))
    parts.append("<h3>Our numbers and the paper's</h3>")
    parts.append(values_table(sec.rows))
    if sec.notes:
        parts.append("<p class='caption'>" + "<br>".join(E(n) for n in sec.notes) + "</p>")
    parts.append("<h3>Runs</h3>")
    if sec.pending:
        parts.append(f"<p class='muted'>{sec.pending} planned run(s) not started.</p>")
    parts.append(runs_table(sec))
    parts.append(f"<p class='muted'><b>Environment:</b> {E(env_line(sec.env))}</p>")
    parts.append(f"<p class='muted'><b>Regenerate:</b> <code>{E(sec.command)}</code></p>")
    return "\n".join(parts)


def summary_table(sections: Sequence[Section]) -> str:
    out = ["<table><tr><th>experiment</th><th>runs</th><th>verdict</th><th>reason</th></tr>"]
    for sec in sections:
        s = sec.spec
        out.append(
            f"<tr class='verdict-row' data-experiment='{E(s.id)}'><td><a href='#{E(s.id)}'>{E(s.id)}</a> "
            f"{E(s.name)}</td><td class='num'>{len(sec.runs)}</td><td>{verdict_badge(sec.verdict.verdict)}</td>"
            f"<td class='muted'>{E(sec.verdict.reason)}</td></tr>"
        )
    out.append("</table>")
    return "".join(out)


def page(title: str, body: str) -> str:
    return (
        f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>{E(title)}</title>"
        f"<meta name='viewport' content='width=device-width, initial-scale=1'><style>{CSS}</style></head>"
        f"<body>\n{body}\n</body></html>\n"
    )


def render_report(study: Study) -> str:
    now = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    head = [
        f"<h1>Understanding Batch Normalization — reproduction report ({E(study.profile)})</h1>",
        f"<p class='muted'>bnlab {E(bnlab.__version__)}, built {E(now)} from <code>{E(str(study.root))}</code>.</p>",
    ]
    if study.profile == "smoke":
        head.append(
            f"<div class='banner'>{E(SMOKE_BANNER)}: every experiment runs end to end at tiny scale; "
            "a verdict counts only under a profile that tests its claim, so each one below is inconclusive and quotes what its rule alone gives.</div>"
        )
    head.append(f"<p><b>Regenerate everything:</b> <code>{E(study.command)}</code></p>")
    head.append(f"<p class='muted'><b>Environment:</b> {E(env_line(study.env, report_runs(study)))}</p>")
    if study.other_profiles:
        other = ", ".join(f"{n} run(s) of profile {p}" for p, n in study.other_profiles.items())
        head.append(
            f"<p class='muted'>Also in this runs root, not in this report: {E(other)} "
            f"(<code>bnlab report {E(str(study.root))} --profile P</code>).</p>"
        )
    if study.untagged:
        head.append(
            f"<p class='muted'>{study.untagged} run(s) belong to no experiment (no meta.json tag).</p>"
        )
    head.append("<h2>Verdicts</h2>")
    head.append(summary_table(study.sections))
    body = "\n".join(head) + "\n" + "\n".join(section_html(s) for s in study.sections)
    body += "\n" + untagged_html(study.untagged_runs)
    return page(f"bnlab report — {study.profile}", body)


def render_compare(a: Study, b: Study, names: tuple[str, str]) -> str:
    """Two studies side by side: verdicts, numbers (ours A, ours B, paper) and figures per experiment."""
    now = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        "<h1>bnlab comparison</h1>",
        f"<p class='muted'>built {E(now)}</p>",
        f"<table><tr><th></th><th>A</th><th>B</th></tr>"
        f"<tr><td>runs root</td><td><code>{E(str(a.root))}</code></td><td><code>{E(str(b.root))}</code></td></tr>"
        f"<tr><td>profile</td><td>{E(a.profile)}</td><td>{E(b.profile)}</td></tr>"
        f"<tr><td>environment</td><td>{E(env_line(a.env))}</td><td>{E(env_line(b.env))}</td></tr>"
        f"<tr><td>command</td><td><code>{E(a.command)}</code></td><td><code>{E(b.command)}</code></td></tr></table>",
    ]
    if "smoke" in (a.profile, b.profile):
        parts.append(f"<div class='banner'>{E(SMOKE_BANNER)} (profile smoke on one side)</div>")
    parts.append("<h2>Verdicts</h2><table><tr><th>experiment</th><th>A</th><th>B</th></tr>")
    for sa, sb in zip(a.sections, b.sections):
        parts.append(
            f"<tr class='verdict-row' data-experiment='{E(sa.spec.id)}'><td><a href='#{E(sa.spec.id)}'>"
            f"{E(sa.spec.id)}</a> {E(sa.spec.name)}</td><td>{verdict_badge(sa.verdict.verdict)}</td>"
            f"<td>{verdict_badge(sb.verdict.verdict)}</td></tr>"
        )
    parts.append("</table>")
    for sa, sb in zip(a.sections, b.sections):
        s = sa.spec
        parts.append(f"<h2 id='{E(s.id)}'>{E(s.id)} · {E(s.name)}</h2><p><b>Claim:</b> {E(s.claim)}</p>")
        parts.append(
            f"<div class='cols'><div><b>A</b> ({E(a.profile)}): {verdict_badge(sa.verdict.verdict)} "
            f"{E(sa.verdict.reason)}</div><div><b>B</b> ({E(b.profile)}): "
            f"{verdict_badge(sb.verdict.verdict)} {E(sb.verdict.reason)}</div></div>"
        )
        # numbers: the union of quantities, A's order first
        by_b = {r.quantity: r for r in sb.rows}
        rows = list(sa.rows) + [r for r in sb.rows if r.quantity not in {x.quantity for x in sa.rows}]
        by_a = {r.quantity: r for r in sa.rows}
        ours = [
            [
                by_a[r.quantity].ours if r.quantity in by_a else None,
                by_b[r.quantity].ours if r.quantity in by_b else None,
            ]
            for r in rows
        ]
        parts.append(values_table(rows, (f"A: {names[0]}", f"B: {names[1]}"), ours))
        figs_b = {f.name: f for f in sb.figures}
        names_all = list(dict.fromkeys([f.name for f in sa.figures] + [f.name for f in sb.figures]))
        for name in names_all:
            cells = []
            for side, figs in (("A", {f.name: f for f in sa.figures}), ("B", figs_b)):
                fo = figs.get(name)
                if fo is None:
                    cells.append(f"<div><b>{side}</b>: no runs</div>")
                elif fo.error:
                    cells.append(f"<div><b>{side}</b><div class='error'>{E(fo.error)}</div></div>")
                else:
                    notes = "<br>".join(E(n) for n in fo.notes)
                    cells.append(
                        f"<div><b>{side}</b><br><img style='width:100%' alt='{E(name)}' src=\"{fo.data_uri}\">"
                        f"<div class='caption'>{notes}</div></div>"
                    )
            parts.append(f"<h3>{E(name)}</h3><div class='cols'>{''.join(cells)}</div>")
        parts.append(
            f"<p class='muted'>Runs: A {len(sa.runs)} ({E(_states(sa.runs))}), "
            f"B {len(sb.runs)} ({E(_states(sb.runs))}).</p>"
        )
    return page("bnlab comparison", "\n".join(parts))


def _states(r: pd.DataFrame) -> str:
    if not len(r):
        return "none"
    return ", ".join(f"{n} {s}" for s, n in r["state"].value_counts().to_dict().items())
