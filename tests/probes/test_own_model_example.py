"""examples/own_model.py runs every probe (per-example gradients with batch statistics included) on a user norm and writes plots."""

import runpy
import sys
from pathlib import Path

EXAMPLE = Path(__file__).parents[2] / "examples" / "own_model.py"


def test_own_model_example_writes_every_figure(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", [str(EXAMPLE), str(tmp_path / "figs"), "--batch", "8"])
    runpy.run_path(str(EXAMPLE), run_name="__main__")
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1] == str(tmp_path / "figs")
    names = sorted(p.name for p in (tmp_path / "figs").iterdir())
    assert names == [
        "depth_profile.png",
        "gradient_histograms.png",
        "kernel_alignment.png",
        "logit_gradients.png",
        "spectra.png",
    ]
    assert all((tmp_path / "figs" / n).stat().st_size > 1000 for n in names)


def test_frozen_mode_refuses_the_user_norm_by_name():
    import pytest
    import torch

    from bnlab.errors import UserError
    from bnlab.probes import per_example_gradients

    mod = runpy.run_path(str(EXAMPLE))
    model = mod["SmallNet"](True)
    x, y = torch.randn(6, 3, 8, 8), torch.arange(6) % 10
    with pytest.raises(UserError, match=r"blocks\.0\.n1"):
        per_example_gradients(model, x, y, "frozen")
