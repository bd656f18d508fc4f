"""`bnlab report`, `export` and `compare` on a Monitor's runs root: the runs-of-no-experiment section with
the generic per-probe figures; export gives the probe table."""

from __future__ import annotations

import base64
import re
import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from monitor_nets import batches, small_bn_net, train  # noqa: E402

from bnlab.cli.main import main
from bnlab.monitor import Monitor


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    runs = tmp_path_factory.mktemp("mon") / "runs"
    train(small_bn_net(), batches(12), lambda m, o: Monitor(m, o, probes="cheap", schedule=5, runs=runs))
    return runs


def test_report_renders_the_monitors_probes(root, capsys):
    assert main(["report", str(root), "--only", "E3"]) == 0
    path = Path(capsys.readouterr().out.strip().splitlines()[-1])
    page = path.read_text()
    assert "Runs of no experiment" in page and "kind" in page and "monitor" in page
    imgs = re.findall(r'src="data:image/png;base64,([^"]+)"', page.split("Runs of no experiment")[1])
    assert len(imgs) == 3  # gradient_histogram, layer_stats, activation_moments
    for b in imgs:
        assert base64.b64decode(b)[:8] == b"\x89PNG\r\n\x1a\n"
    md = (path.parent / "report.md").read_text()
    assert "## Runs of no experiment" in md
    for link in re.findall(r"\]\((figures/untagged_[^)]+\.png)\)", md):
        assert (path.parent / link).exists()


def test_export_gives_the_probe_table(root, tmp_path, capsys):
    out = tmp_path / "layer_stats.csv"
    assert main(["export", str(root), str(out), "--probe", "layer_stats"]) == 0
    df = pd.read_csv(out)
    assert {"run_id", "layer", "metric", "value", "step"} <= set(df.columns)
    assert sorted(df["step"].unique()) == [0, 5, 10]
    assert {"grad_norm", "weight_norm", "update_ratio"} <= set(df["metric"])
    runs = tmp_path / "runs.csv"
    assert main(["export", str(root), str(runs)]) == 0
    assert pd.read_csv(runs)["kind"].tolist() == ["monitor"]
    assert main(["export", str(root), str(tmp_path / "x.csv"), "--probe", "sgd_noise"]) == 2


def test_compare_two_monitor_roots(root, tmp_path, capsys):
    other = tmp_path / "runs_b"
    train(small_bn_net(seed=3), batches(6), lambda m, o: Monitor(m, o, schedule=[0, 5], runs=other))
    assert main(["compare", str(root), str(other), "--only", "E3", "--out", str(tmp_path / "cmp")]) == 0
    assert Path(capsys.readouterr().out.strip().splitlines()[-1]).exists()
