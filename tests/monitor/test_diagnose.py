"""bnlab.diagnose and `bnlab diagnose`: numbers of the model beside bnlab's references measured in the same
call, findings, one self-contained page (and in headless Chromium: every figure decodes, no console error)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import bnlab
from bnlab.cli.main import main

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def npz(tmp_path_factory):
    path = tmp_path_factory.mktemp("npz") / "data.npz"
    rng = np.random.default_rng(0)
    np.savez(path, x=rng.integers(0, 256, (40, 32, 32, 3), dtype=np.uint8), y=rng.integers(0, 10, 40))
    return path


def test_python_twin_matches_the_probes_and_leaves_the_model(npz):
    sys.path.insert(0, str(EXAMPLES))
    import model_factory

    from bnlab.probes import output_bias
    from bnlab.report.diagnose_data import load_batch

    model = model_factory.small_bn_convnet()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = load_batch("cifar10", None, str(npz), 16, 0)
    d = bnlab.diagnose(model, [(x, y)], references_too=False, progress=False)
    (label,) = d.numbers
    ref = output_bias(model, x, y).table
    assert d.numbers[label]["top_class_share"] == ref[ref.metric == "top_class_share"]["value"].item()
    assert any("of the predictions at init" in f for f in d.findings)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(p.grad is None for p in model.parameters())


@pytest.fixture(scope="module")
def page(npz, tmp_path_factory):
    out = tmp_path_factory.mktemp("diag") / "diagnose.html"
    rc = main(
        [
            "diagnose",
            f"{EXAMPLES / 'model_factory.py'}:small_bn_convnet",
            "--npz",
            str(npz),
            "--batch-size",
            "16",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    return out


def test_cli_page_has_references_findings_and_figures(page):
    text = page.read_text()
    assert "bnlab ResNet-20 with BN" in text and "bnlab ResNet-20 without BN" in text
    assert "Table 1 ratio" in text and "Findings" in text
    assert len(re.findall(r'src="data:image/png;base64,', text)) == 3
    assert not re.search(r"(src|href)=\"https?://", text)  # self-contained


def test_bad_targets_are_exit_2(npz, tmp_path):
    assert main(["diagnose", "no_colon", "--npz", str(npz)]) == 2
    assert main(["diagnose", f"{EXAMPLES / 'model_factory.py'}:nope", "--npz", str(npz)]) == 2
    bad = tmp_path / "bad.npz"
    np.savez(bad, images=np.zeros((4, 3, 8, 8)))
    assert main(["diagnose", f"{EXAMPLES / 'model_factory.py'}:small_bn_convnet", "--npz", str(bad)]) == 2
    assert not (tmp_path / "diagnose.html").exists()


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} missing (apt-get install -y chromium)")
def test_page_in_headless_chromium(page, tmp_path):
    probe = (
        "<script>window.addEventListener('error',function(){window.__e=(window.__e||0)+1},true);"
        "window.addEventListener('load',function(){var i=[].slice.call(document.images);"
        "document.title='IMAGES '+i.length+' DECODED '+i.filter(function(m){return m.complete&&m.naturalWidth>0}).length"
        "+' ERRORS '+(window.__e||0)});</script>"
    )
    copy = tmp_path / "page.html"
    copy.write_text(page.read_text().replace("</head>", probe + "</head>"))
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'p'}",
    ]
    res = subprocess.run(
        [CHROMIUM, *flags, "--enable-logging=stderr", "--v=0", "--dump-dom", copy.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert "IMAGES 3 DECODED 3 ERRORS 0" in res.stdout
    assert not [line for line in res.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]


def test_own_loop_example_runs(tmp_path):
    res = subprocess.run(
        [sys.executable, str(EXAMPLES / "own_loop.py"), str(tmp_path / "runs")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    run = Path(res.stdout.strip().splitlines()[-1])
    assert (run / "probes" / "layer_stats.jsonl").exists() and "monitor" in (run / "config.yaml").read_text()
