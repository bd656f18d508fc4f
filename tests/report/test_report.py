"""build_report / build_comparison on a small synthetic runs root written by hand (every analysis's fake_runs)."""

import re
import sys
from html import unescape
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from fake_root import EXPECTED, make_root  # noqa: E402

from bnlab.analyses import analysis  # noqa: E402
from bnlab.analyses.spec import all_specs  # noqa: E402
from bnlab.cli.main import main  # noqa: E402
from bnlab.errors import UserError  # noqa: E402
from bnlab.report import build_comparison, build_report  # noqa: E402

IDS = [s.id for s in all_specs()]


@pytest.fixture(scope="module")
def cpu_report(tmp_path_factory):
    root = make_root(tmp_path_factory.mktemp("runs") / "cpu", "cpu")
    return root, build_report(root)


def verdicts(html: str) -> dict[str, str]:
    rows = re.findall(r"<tr class='verdict-row' data-experiment='([^']+)'>.*?class=\"verdict v-(\w+)\"", html)
    return dict(rows)


def test_report_is_self_contained(cpu_report):
    root, path = cpu_report
    assert path == root / "report" / "report.html"
    html = path.read_text(encoding="utf-8")
    assert not re.search(r"(?:src|href)\s*=\s*[\"']?\s*(?:https?:)?//", html), "external reference"
    assert "http://" not in html and "https://" not in html
    imgs = re.findall(r"<img[^>]*\bsrc=\"([^\"]*)\"", html)
    assert len(imgs) >= 12
    assert all(src.startswith("data:image/png;base64,") and len(src) > 1000 for src in imgs)
    assert "<script" not in html and "<link" not in html


def test_one_verdict_row_per_experiment_computed_by_rule(cpu_report):
    _, path = cpu_report
    html = path.read_text(encoding="utf-8")
    rows = re.findall(r"<tr class='verdict-row' data-experiment='([^']+)'", html)
    assert rows == IDS  # every spec, once, in order
    assert verdicts(html) == {k: EXPECTED[k] for k in IDS}
    for sid in IDS:
        assert f"<h2 id='{sid}'>" in html


def test_sections_name_missing_runs_failures_and_excluded_data(cpu_report):
    root, path = cpu_report
    html = path.read_text(encoding="utf-8")
    empty = root.parent / "empty"
    empty.mkdir()
    nothing = build_report(empty, profile="cpu", only=["E12e"]).read_text(encoding="utf-8")
    assert "No runs of E12e" in nothing and verdicts(nothing) == {"E12e": "inconclusive"}
    e12b = html.split("<h2 id='E12b'>")[1].split("<h2 id=")[0]
    assert "failed" in e12b and "out of memory" in e12b  # listed, not dropped
    e1 = html.split("<h2 id='E1'>")[1].split("<h2 id=")[0]
    assert "diverged at step 3" in e1  # the diverged run is named in the figure's caption
    assert "non-finite" in e1  # and its NaN accuracy
    e4 = html.split("<h2 id='E4'>")[1].split("<h2 id=")[0]
    assert "non-finite or non-positive" in e4  # the overflowed loss ratios
    e8 = html.split("<h2 id='E8'>")[1].split("<h2 id=")[0]
    assert "not drawn on the log axis" in e8
    # provenance beside the paper's values, the environment and the command
    assert "Fig. 2, approximate, read off the figure" in html
    assert "not in the paper" in html
    assert "0123456789" in html  # git sha from env.json
    assert "bnlab reproduce --profile cpu --only E3 --runs" in html
    assert "smoke — plumbing check" not in html  # no banner on a non-smoke profile


def test_figures_and_markdown_written(cpu_report):
    root, path = cpu_report
    figs = root / "report" / "figures"
    for spec in all_specs():
        for name in analysis(spec).FIGURES:
            assert (figs / f"{spec.id}_{name}.png").stat().st_size > 1000, name
            assert (figs / f"{spec.id}_{name}.pdf").exists()
    md = (root / "report" / "report.md").read_text(encoding="utf-8")
    for sid in IDS:
        assert f"## {sid} · " in md
    assert "](figures/E3_grad_histograms.png)" in md


def test_smoke_banner_reproduce_command_and_inconclusive_verdicts(tmp_path):
    root = make_root(tmp_path / "smoke", "smoke")
    (root / "reproduce.json").write_text(
        '{"profile": "smoke", "command": "bnlab reproduce --profile smoke --runs X"}'
    )
    html = build_report(root, out_dir=tmp_path / "out", only=["E3", "E10", "E12e"]).read_text(
        encoding="utf-8"
    )
    assert html.count("smoke — plumbing check — not comparable with the paper") >= 3
    assert "bnlab reproduce --profile smoke --runs X" in html
    assert set(verdicts(html).values()) == {"inconclusive"}
    assert "the rule alone gives 'reproduced'" in unescape(html)  # the rule's outcome is still quoted


def test_a_failing_figure_is_reported_not_fatal(tmp_path, monkeypatch):
    def boom(runs, spec):
        raise RuntimeError("broken on purpose")

    e4 = analysis(next(s for s in all_specs() if s.id == "E4"))
    monkeypatch.setitem(e4.FIGURES, next(iter(e4.FIGURES)), boom)
    root = make_root(tmp_path / "r", "cpu")
    html = build_report(root, only=["E4"]).read_text(encoding="utf-8")
    e4 = html.split("<h2 id='E4'>")[1].split("<h2 id=")[0]
    assert "class='error'" in e4 and "broken on purpose" in e4


def test_cli_report_and_compare_last_line_is_the_path(tmp_path, capsys):
    a = make_root(tmp_path / "a", "cpu")
    b = make_root(tmp_path / "b", "smoke")
    assert main(["report", str(a), "--out", str(tmp_path / "rep"), "--only", "E1"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1] == str(tmp_path / "rep" / "report.html")
    assert main(["compare", str(a), str(b), "--out", str(tmp_path / "cmp"), "--only", "E3,E8"]) == 0
    path = Path(capsys.readouterr().out.strip().splitlines()[-1])
    html = path.read_text(encoding="utf-8")
    assert re.findall(r"<tr class='verdict-row' data-experiment='([^']+)'", html) == ["E3", "E8"]
    assert "https://" not in html and "http://" not in html
    imgs = re.findall(r"<img[^>]*\bsrc=\"([^\"]*)\"", html)
    assert len(imgs) == 4 and all(s.startswith("data:image/png;base64,") for s in imgs)
    assert main(["report", str(tmp_path / "nothing")]) == 2


def test_bad_input_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        build_report(tmp_path / "missing")
    with pytest.raises(UserError, match="profile"):
        build_report(make_root(tmp_path / "r", "cpu"), profile="huge")
    with pytest.raises(UserError, match="two different"):
        build_comparison(tmp_path / "r", tmp_path / "r")
