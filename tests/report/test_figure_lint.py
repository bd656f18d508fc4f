"""Every report figure of the synthetic runs root, linted as a reader would: a title, labelled axes, no text
over other text (tight bounding boxes after drawing), at most 12 legend entries, and no empty or all-NaN
panel without a "no data" message. BNLAB_LINT_OUT=DIR also saves the PNGs there, for looking at them."""

from __future__ import annotations

import itertools
import os
import sys
from pathlib import Path

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")
sys.path.insert(0, str(Path(__file__).parent))
import matplotlib.style  # noqa: E402
from fake_root import make_root  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.text import Text  # noqa: E402

from bnlab.analyses import analysis  # noqa: E402
from bnlab.analyses.spec import all_specs  # noqa: E402
from bnlab.report.study import style_path  # noqa: E402
from bnlab.store.runset import RunSet  # noqa: E402

MAX_LEGEND = 12
PROFILE = "cpu"


def visible_texts(fig: Figure) -> list[Text]:
    """Every drawn, non-empty text of the figure: titles, labels, legends, annotations, and the tick labels
    of ticks inside the view (matplotlib keeps labels of ticks outside it, which it does not draw)."""
    ticks = set()
    drawn = []
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            every = axis.get_major_ticks() + axis.get_minor_ticks()
            ticks |= {id(lab) for t in every for lab in (t.label1, t.label2)}
            if ax.get_visible() and axis.get_visible():
                drawn += [
                    lab for t in axis._update_ticks() for lab in (t.label1, t.label2) if lab.get_visible()
                ]
    out = [t for t in fig.findobj(Text) if id(t) not in ticks and t.get_visible() and _shown(t)] + drawn
    return [t for t in out if t.get_text().strip() and t.get_alpha() != 0]


def _shown(t: Text) -> bool:
    a = t.axes
    return t.figure is not None and (a is None or a.get_visible())


def corners(t: Text, r) -> np.ndarray:  # noqa: ANN001
    """The 4 corners (pixels) of a text's own rectangle, rotated as drawn (a rotated text's window extent is
    the axis-aligned box around it, which would make neighbouring slanted tick labels "overlap")."""
    bb = t.get_window_extent(r)
    angle = t.get_rotation() % 180
    if angle in (0, 90):
        return np.array([[bb.x0, bb.y0], [bb.x1, bb.y0], [bb.x1, bb.y1], [bb.x0, bb.y1]])
    t.set_rotation(0)
    flat = t.get_window_extent(r)
    t.set_rotation(angle)
    w, h, th = flat.width / 2, flat.height / 2, np.deg2rad(angle)
    rot = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
    box = np.array([[-w, -h], [w, -h], [w, h], [-w, h]]) @ rot.T
    return box + [(bb.x0 + bb.x1) / 2, (bb.y0 + bb.y1) / 2]


def _overlap(a: np.ndarray, b: np.ndarray, margin: float = 1.0) -> bool:
    """Separating-axis test of two convex quadrilaterals, overlapping by more than `margin` pixels."""
    for poly in (a, b):
        for i in range(4):
            edge = poly[(i + 1) % 4] - poly[i]
            axis = np.array([-edge[1], edge[0]]) / (np.hypot(*edge) or 1.0)
            pa, pb = a @ axis, b @ axis
            if min(pa.max(), pb.max()) - max(pa.min(), pb.min()) <= margin:
                return False
    return True


def overlaps(fig: Figure) -> list[str]:
    """Pairs of drawn texts whose rectangles overlap by more than 1 px."""
    r = fig.canvas.get_renderer()
    boxes = []
    for t in visible_texts(fig):
        try:
            c = corners(t, r)
        except Exception:  # noqa: BLE001 - a text that cannot be laid out is not drawn
            continue
        if np.isfinite(c).all() and np.ptp(c[:, 0]) > 0 and np.ptp(c[:, 1]) > 0:
            boxes.append((t, c))
    bad = []
    for (t1, c1), (t2, c2) in itertools.combinations(boxes, 2):
        if _overlap(c1, c2):
            bad.append(f"{t1.get_text()[:30]!r} overlaps {t2.get_text()[:30]!r}")
    return bad


def has_finite_data(ax: Axes) -> bool:
    for line in ax.get_lines():
        x, y = (np.asarray(v, dtype=float) for v in line.get_data())
        if np.isfinite(x).any() and np.isfinite(y).any():
            return True
    for c in ax.collections:
        offs = np.asarray(c.get_offsets(), dtype=float)
        if offs.size and np.isfinite(offs).all(axis=-1).any():
            return True
        if c.get_paths() and offs.size == 0:
            return True
        arr = c.get_array()
        if arr is not None and np.isfinite(np.asarray(arr, dtype=float)).any():
            return True
    for p in ax.patches:
        bb = p.get_bbox() if hasattr(p, "get_bbox") else None
        if bb is not None and np.isfinite([bb.width, bb.height]).all() and (bb.width or bb.height):
            return True
    for im in ax.images:
        if np.isfinite(np.asarray(im.get_array(), dtype=float)).any():
            return True
    # a table or text-only panel (e.g. a results table) counts as content
    return bool(ax.tables) or any(t.get_text().strip() for t in ax.texts)


def lint(fig: Figure) -> list[str]:
    if not hasattr(fig.canvas, "get_renderer"):  # a bare Figure(): draw it with Agg
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        FigureCanvasAgg(fig)
    fig.canvas.draw()
    problems = []
    axes = [a for a in fig.axes if a.get_visible() and a.get_label() != "<colorbar>"]
    supt = fig._suptitle.get_text().strip() if fig._suptitle is not None else ""
    data_axes = [a for a in axes if a.axison]
    if not supt and not any(a.get_title().strip() or a.get_title(loc="left").strip() for a in data_axes):
        problems.append("no title (suptitle or axes titles)")
    supx = fig._supxlabel.get_text().strip() if getattr(fig, "_supxlabel", None) is not None else ""
    supy = fig._supylabel.get_text().strip() if getattr(fig, "_supylabel", None) is not None else ""
    for i, ax in enumerate(data_axes):
        name = ax.get_title() or f"axes {i}"
        ticks_x = any(t.get_text().strip() for t in ax.get_xticklabels() if t.get_visible())
        ticks_y = any(t.get_text().strip() for t in ax.get_yticklabels() if t.get_visible())
        if ticks_x and not (ax.get_xlabel().strip() or supx or _shares_labelled(ax, "x")):
            problems.append(f"{name}: x axis has no label")
        if ticks_y and not (ax.get_ylabel().strip() or supy or _shares_labelled(ax, "y")):
            problems.append(f"{name}: y axis has no label")
        leg = ax.get_legend()
        if leg is not None and len(leg.get_texts()) > MAX_LEGEND:
            problems.append(f"{name}: {len(leg.get_texts())} legend entries (> {MAX_LEGEND})")
        if not has_finite_data(ax) and not any("no data" in t.get_text().lower() for t in ax.texts):
            problems.append(f"{name}: empty or all-NaN panel without a 'no data' message")
    for leg in fig.legends:
        if len(leg.get_texts()) > MAX_LEGEND:
            problems.append(f"figure legend: {len(leg.get_texts())} entries (> {MAX_LEGEND})")
    problems += overlaps(fig)
    return problems


def _shares_labelled(ax: Axes, which: str) -> bool:
    """A panel of a grid whose shared axis is labelled on a sibling (same row for y, same column for x)."""
    group = ax.get_shared_x_axes() if which == "x" else ax.get_shared_y_axes()
    for other in group.get_siblings(ax):
        if other is not ax and (other.get_xlabel() if which == "x" else other.get_ylabel()).strip():
            return True
    return False


@pytest.fixture(scope="module")
def fake_runs(tmp_path_factory: pytest.TempPathFactory) -> RunSet:
    return RunSet.open(make_root(tmp_path_factory.mktemp("lint_root"), PROFILE))


FIGURES = [
    pytest.param(spec, name, id=f"{spec.id}_{name}")
    for spec in all_specs()
    for name in analysis(spec).FIGURES
    if spec.profiles.get(PROFILE) is not None
]


@pytest.mark.parametrize("spec,name", FIGURES)
def test_figure_lint(fake_runs: RunSet, spec, name: str) -> None:  # noqa: ANN001
    import matplotlib.pyplot as plt

    runs = fake_runs.experiment(spec.id, PROFILE, needs=spec.paper.needs)
    with matplotlib.style.context(str(style_path())):
        fig = analysis(spec).FIGURES[name](runs, spec)
        try:
            problems = lint(fig)
            out = os.environ.get("BNLAB_LINT_OUT")
            if out:
                Path(out).mkdir(parents=True, exist_ok=True)
                fig.savefig(Path(out) / f"{spec.id}_{name}.png")
        finally:
            plt.close(fig)
    assert problems == [], f"{spec.id} {name}: " + "; ".join(problems)


def test_the_lint_catches_each_fault() -> None:
    """The lint is not vacuous: each fault it looks for, drawn on purpose, is reported."""
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2)
    a.plot([0, 1], [0, 1])
    for i in range(13):
        a.plot([0, 1], [i, i], label=f"c{i}")
    a.legend()
    a.text(0.5, 0.5, "first", transform=a.transAxes)
    a.text(0.5, 0.5, "second", transform=a.transAxes)
    b.plot([0, 1], [np.nan, np.nan])
    problems = " | ".join(lint(fig))
    plt.close(fig)
    for want in ("no title", "x axis has no label", "13 legend entries", "all-NaN panel", "'first' overlaps"):
        assert want in problems, want
