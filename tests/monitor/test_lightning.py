"""ProbeCallback with a real lightning.Trainer on CPU: 20 steps, weights identical with and without it, the
run directory and TensorBoard events appear; examples/lightning_callback.py runs."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip(
    "lightning", reason="the lightning extra is not installed (pip install 'bnlab[lightning]')"
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _example():
    spec = importlib.util.spec_from_file_location("lightning_callback", EXAMPLES / "lightning_callback.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_trainer_weights_identical_with_and_without_the_callback(tmp_path):
    from bnlab.monitor.lightning import ProbeCallback
    from bnlab.store import load_probes

    ex = _example()
    bare = ex.fit([])
    cb = ProbeCallback(probes="cheap", schedule=5, runs=tmp_path)
    watched = ex.fit([cb])
    for (k, a), (_, b) in zip(bare.state_dict().items(), watched.state_dict().items()):
        assert torch.equal(a, b), k  # BN running statistics included
    run = cb.monitor.run_dir
    assert (run / "status.json").read_text().count("complete") == 1
    assert sorted(load_probes(tmp_path, "layer_stats")["step"].unique()) == [0, 5, 10, 15]
    if importlib.util.find_spec("tensorboard") is not None:
        assert list((run / "tb").glob("events.out.tfevents.*"))


def test_example_script_runs(tmp_path):
    res = subprocess.run(
        [sys.executable, str(EXAMPLES / "lightning_callback.py"), str(tmp_path / "runs")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    run = Path(res.stdout.strip().splitlines()[-1])
    assert (run / "probes" / "gradient_histogram.jsonl").exists()
