"""The page of `bnlab diagnose`: findings, the numbers table (your model beside bnlab's BN and no-BN
references) and three figures, in one self-contained HTML file (the report's CSS, base64 PNGs)."""

from __future__ import annotations

import base64
import io
import math
from pathlib import Path
from typing import Any

import matplotlib.style
import numpy as np
from matplotlib.figure import Figure

from bnlab.report.html import E, fmt, page
from bnlab.report.study import style_path
from bnlab.store.files import atomic_write_text


def _png(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _numbers_figure(d: Any) -> Figure:
    from bnlab.report.diagnose import METRICS

    keys = [k for k in METRICS if any(math.isfinite(v.get(k, math.nan)) for v in d.numbers.values())]
    cols = 3
    rows = max(1, math.ceil(len(keys) / cols))
    fig = Figure(figsize=(12, 2.6 * rows), layout="constrained")
    names = list(d.numbers)
    for i, key in enumerate(keys):
        ax = fig.add_subplot(rows, cols, i + 1)
        vals = [d.numbers[n].get(key, math.nan) for n in names]
        ax.bar(
            range(len(names)),
            [v if math.isfinite(v) else 0 for v in vals],
            color=["C0", "C1", "C2"][: len(names)],
        )
        ax.set_xticks(range(len(names)), ["yours", "BN", "no BN"][: len(names)], fontsize=8)
        ax.set_title(METRICS[key], fontsize=8)
    return fig


def _depth_figure(d: Any) -> Figure:
    fig = Figure(figsize=(6, 3.4), layout="constrained")
    ax = fig.add_subplot()
    for name, t in d.depth.items():
        if len(t):
            ax.plot(np.arange(len(t)), t["value"].to_numpy(float), marker="o", ms=3, label=name)
    ax.set_xlabel("block (forward order)")
    ax.set_ylabel("log10 channel std")
    ax.set_title("Activation scale vs depth at init", fontsize=9)
    ax.legend(fontsize=7)
    return fig


def _scan_figure(d: Any) -> Figure:
    fig = Figure(figsize=(6, 3.4), layout="constrained")
    ax = fig.add_subplot()
    for name, t in d.scans.items():
        ok = t[np.isfinite(t["value"]) & (t["value"] > 0)]
        ax.plot(ok["eta"], ok["value"], marker="o", ms=3, label=name)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.axhline(1.0, color="gray", lw=0.8)
    ax.set_xlabel("lr of one gradient step")
    ax.set_ylabel("loss after / loss before")
    ax.set_title("The loss along the first step", fontsize=9)
    ax.legend(fontsize=7)
    return fig


def render(d: Any, title: str) -> str:
    from bnlab.report.diagnose import METRICS

    with matplotlib.style.context(str(style_path())):
        figs = [
            ("numbers", "Each number of the table, your model beside bnlab's references", _numbers_figure(d)),
            ("depth", "log10 channel std of each block output (activation_moments)", _depth_figure(d)),
            (
                "first step",
                "minibatch loss ratio after one gradient step of each lr (step_size_scan)",
                _scan_figure(d),
            ),
        ]
        imgs = [(n, desc, _png(f)) for n, desc, f in figs]
    names = list(d.numbers)
    body = [f"<h1>{E(title)}</h1>"]
    body.append(
        f"<p class='muted'>Measured at initialization on one minibatch of shape {E(str(d.batch_shape))}, BN in "
        "training mode (batch statistics); the references are bnlab's ResNet-20 with and without BN, measured "
        "on the same minibatch in the same command.</p>"
    )
    body.append("<h2>Findings</h2><ul>" + "".join(f"<li>{E(f)}</li>" for f in d.findings) + "</ul>")
    rows = ["<table><tr><th>quantity</th>" + "".join(f"<th>{E(n)}</th>" for n in names) + "</tr>"]
    for key, label in METRICS.items():
        rows.append(
            f"<tr><td>{E(label)}</td>"
            + "".join(f"<td class='num'>{E(fmt(d.numbers[n].get(key)))}</td>" for n in names)
            + "</tr>"
        )
    rows.append(
        "<tr><td>seconds to measure</td>"
        + "".join(f"<td class='num'>{fmt(d.seconds.get(n))}</td>" for n in names)
        + "</tr></table>"
    )
    body.append("<h2>Numbers</h2>" + "".join(rows))
    body.append("<h2>Figures</h2>")
    for name, desc, uri in imgs:
        body.append(
            f"<div class='fig'><div><img alt='{E(name)}' src=\"{uri}\"></div><div class='desc caption'><b>{E(name)}</b> — {E(desc)}</div></div>"
        )
    return page(title, "\n".join(body))


def write_page(d: Any, path: Any, title: str = "bnlab diagnose") -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, render(d, title))
    path.chmod(0o644)
    return path
