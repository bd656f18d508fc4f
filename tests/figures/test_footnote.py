"""figures.basic.footnote: one place for the small grey note at a figure's bottom edge."""

from __future__ import annotations

from matplotlib.figure import Figure

from bnlab.figures.basic import footnote


def test_footnote_writes_the_note_at_the_bottom_and_nothing_when_empty():
    fig = Figure()
    footnote(fig, None)
    footnote(fig, "")
    assert fig.texts == []
    footnote(fig, "mean ± SE over seeds")
    (t,) = fig.texts
    assert t.get_text() == "mean ± SE over seeds"
    assert t.get_position() == (0.5, 0.005)
    assert (t.get_ha(), t.get_va(), t.get_fontsize()) == ("center", "bottom", 8.0)
