"""Faults: write failures, probes on overflowing networks, NaN never silently in a figure."""

import json
import math
import os
import subprocess
import sys

import pytest
import torch

from bnlab import build_model
from bnlab.probes import PROBE_KIND, PROBES
from bnlab.probes.context import ProbeContext
from bnlab.probes.guard import call_probe
from bnlab.store import RunDir
from bnlab.training import train


def test_enospc_leaves_run_interrupted_and_keeps_earlier_results(tmp_path, tiny_overrides):
    over = tiny_overrides + ["train.epochs=3", "train.checkpoint_every=0.5"]
    code = f"from bnlab.training import train; train(None, {str(tmp_path)!r}, {over!r}, progress=False)"
    env = {**os.environ, "BNLAB_FAULT_ENOSPC": "metrics_append:9"}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert proc.returncode != 0
    (run_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    st = RunDir(run_dir).status()
    assert st["state"] == "interrupted" and "No space left on device" in st["reason"]
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert len(lines) == 8  # the 8 lines written before the failure are intact
    assert list(run_dir.glob("ckpt/step-*.pt"))  # earlier checkpoints are kept
    # a write failure is not the run's fault: running it again resumes it
    train(None, tmp_path, over, progress=False)
    assert RunDir(run_dir).state() == "complete"


def test_cli_write_failure_is_one_sentence(tmp_path):
    env = {**os.environ, "BNLAB_FAULT_ENOSPC": "metrics_append:1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bnlab.cli.main",
            "train",
            "--runs",
            str(tmp_path),
            "--quiet",
            "--set",
            "model.depth=8",
            "--set",
            "data.name=synthetic",
            "--set",
            "data.synthetic_train=256",
            "--set",
            "optim.batch_size=32",
            "--set",
            "train.epochs=1",
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr and "write failed: No space left on device" in proc.stderr


def _overflowing_model():
    torch.manual_seed(0)
    m = build_model(depth=8, norm="none")
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(1e12)  # logits overflow float32
    return m


@pytest.mark.parametrize(
    "name",
    [
        "gradient_histogram",
        "activation_moments",
        "output_bias",
        "kernel_alignment",
        "gradient_spectrum",
        "gradient_variance",
        "step_size_scan",
        "sgd_noise",
        "hessian_top_eig",
        "gradient_geometry",
    ],
)
def test_probes_on_an_overflowing_network_return_nonfinite_rows(name):
    model = _overflowing_model()
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    fn = PROBES.get(name)
    if PROBE_KIND[name] == "data":
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        res = call_probe(
            fn, name, model, [(x, y), (x.flip(0), y.flip(0))], ctx=ProbeContext(optimizer=opt, lr=0.1)
        )
    else:
        res = call_probe(fn, name, model, x, y)
    assert "finite" in res.table.columns
    vals = res.table["value"].to_numpy(dtype=float)
    assert (~res.table["finite"]).sum() == (~(vals == vals) | (abs(vals) == math.inf)).sum()


def test_a_probe_bug_on_a_finite_network_is_not_swallowed():
    model = build_model(depth=8)
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))

    def broken(model, inputs, targets):
        raise ValueError("bug")

    with pytest.raises(ValueError):
        call_probe(broken, "broken", model, x, y)
