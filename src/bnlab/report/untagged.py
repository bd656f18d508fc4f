"""Runs of no experiment: runs under a root that no experiment spec tags (no meta.json `experiments`), such
as a Monitor's run in a user's own loop (`kind: monitor`) or a hand-made `bnlab train` run.

They get one clearly separated section after the experiments: a table (run, kind, state, steps, probes) and,
per run and probe, the generic per-probe figure (bnlab.figures.generic.metrics_by_layer: every metric
against the layer order) at the run's last measured step. No verdicts: no claim is attached to these runs.
At most MAX_RUNS runs are drawn; the rest are listed.
"""

from __future__ import annotations

import base64
import html
import logging
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib.style
import pandas as pd

from bnlab.report.study import FigureOut, style_path
from bnlab.store.runset import RunSet, experiments_of

log = logging.getLogger("bnlab.report")
MAX_RUNS = 20
E = html.escape


@dataclass
class UntaggedRun:
    run_id: str
    kind: str
    state: str
    steps: object
    probes: list[str]
    figures: list[FigureOut] = field(default_factory=list)


def untagged_rows(runs: pd.DataFrame) -> pd.DataFrame:
    if not len(runs):
        return runs
    if "meta.experiments" not in runs.columns:
        return runs
    return runs[runs["meta.experiments"].apply(lambda v: not experiments_of(v))]


def _probe_names(run_dir: Path) -> list[str]:
    return sorted(p.stem for p in (run_dir / "probes").glob("*.jsonl"))


def _figure(runs: RunSet, row: pd.Series, probe: str, out: Path, stem: str) -> FigureOut:
    from bnlab.figures.generic import metrics_by_layer

    fo = FigureOut(probe, f"{probe}: every metric against the layer order")
    try:
        table = runs.probe(probe, runs.runs[runs.runs["run_id"] == row["run_id"]])
        if table.empty or "value" not in table.columns:
            fo.error, fo.missing_data = "no rows", True
            return fo
        last = int(pd.to_numeric(table["step"]).max()) if "step" in table.columns else None
        if last is not None:
            table = table[pd.to_numeric(table["step"]) == last]
            fo.description += f" at step {last}"
        with matplotlib.style.context(str(style_path())):
            fig = metrics_by_layer(table, title=f"{row['run_id']} · {probe}")
            png = out / f"{stem}.png"
            fig.savefig(png)
            fig.savefig(out / f"{stem}.pdf")
        fo.png, fo.pdf = png, out / f"{stem}.pdf"
        fo.data_uri = "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode("ascii")
    except Exception as e:  # a broken figure is reported in its place, never crashes the report
        log.warning("figure %s of %s failed", probe, row["run_id"], exc_info=True)
        fo.error = f"{type(e).__name__}: {e}"
    return fo


def collect_untagged(root_runs: RunSet, figures_dir: Path, stem_prefix: str = "") -> list[UntaggedRun]:
    rows = untagged_rows(root_runs.runs)
    out = []
    for i, (_, row) in enumerate(rows.iterrows()):
        run_dir = Path(str(row["run_dir"]))
        kind = row.get("kind")
        u = UntaggedRun(
            run_id=str(row["run_id"]),
            kind=str(kind) if isinstance(kind, str) else "train",
            state=str(row.get("state")),
            steps=row.get("step"),
            probes=_probe_names(run_dir),
        )
        if i < MAX_RUNS:
            for probe in u.probes:
                stem = f"{stem_prefix}untagged_{u.run_id}_{probe}"
                u.figures.append(_figure(root_runs, row, probe, figures_dir, stem))
        out.append(u)
    return out


def untagged_html(runs: list[UntaggedRun]) -> str:
    if not runs:
        return ""
    parts = [
        "<hr><h2 id='untagged'>Runs of no experiment</h2>",
        "<p class='muted'>Runs that no experiment spec tags (a Monitor in your own loop, a hand-made run): "
        "their probes with the generic per-probe figure, no paper values and no verdict.</p>",
        "<table><tr><th>run</th><th>kind</th><th>state</th><th>steps</th><th>probes</th></tr>",
    ]
    for u in runs:
        parts.append(
            f"<tr><td><code>{E(u.run_id)}</code></td><td>{E(u.kind)}</td><td>{E(u.state)}</td>"
            f"<td class='num'>{E(str(u.steps))}</td><td>{E(', '.join(u.probes) or '—')}</td></tr>"
        )
    parts.append("</table>")
    for u in runs:
        for fo in u.figures:
            if fo.error:
                body = f"<div class='nodata'>figure <b>{E(fo.name)}</b> not drawn: {E(fo.error)}</div>"
            else:
                body = f"<img alt='{E(u.run_id)} {E(fo.name)}' src=\"{fo.data_uri}\">"
            caption = f"<div class='desc caption'><b>{E(u.run_id)}</b> — {E(fo.description)}</div>"
            parts.append(f"<div class='fig'><div>{body}</div>{caption}</div>")
    if len(runs) > MAX_RUNS:
        parts.append(f"<p class='muted'>Figures drawn for the first {MAX_RUNS} runs only.</p>")
    return "\n".join(parts)


def untagged_md(runs: list[UntaggedRun], out_dir: Path) -> str:
    if not runs:
        return ""
    lines = [
        "---",
        "",
        "## Runs of no experiment",
        "",
        "Runs that no experiment spec tags: their probes with the generic per-probe figure, no verdict.",
        "",
        "| run | kind | state | steps | probes |",
        "|---|---|---|---:|---|",
    ]
    for u in runs:
        lines.append(f"| `{u.run_id}` | {u.kind} | {u.state} | {u.steps} | {', '.join(u.probes) or '—'} |")
    lines.append("")
    for u in runs:
        for fo in u.figures:
            if fo.png is not None:
                lines += [f"![{u.run_id} {fo.name}]({fo.png.relative_to(out_dir).as_posix()})", ""]
            else:
                lines += [f"- {u.run_id} {fo.name}: not drawn ({fo.error})", ""]
    return "\n".join(lines)
