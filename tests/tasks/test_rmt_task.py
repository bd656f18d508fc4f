"""run_task / study tables / CLI: the sweep entry point writes probes and a terminal status."""

import json

import numpy as np
import pandas as pd
import pytest

from bnlab.config import validate
from bnlab.errors import UserError
from bnlab.rmt import study
from bnlab.tasks.rmt_task import run_kind, run_task


def test_run_task_spectra(tmp_path):
    cfg = validate(
        {"task": "rmt", "task_options": {"kind": "spectra", "n": 60, "ms": [1, 2], "draws": 2, "bins": 8}}
    )
    status = run_task(cfg, tmp_path)
    assert status["state"] == "complete"
    rows = [json.loads(x) for x in (tmp_path / "probes" / "rmt_spectra.jsonl").read_text().splitlines()]
    ks = [r for r in rows if r["metric"] == "ks"]
    assert len(ks) == 2 and all(r["step"] == 0 and 0 < r["value"] < 0.2 for r in ks)
    hist = [r for r in rows if r["metric"] == "hist_density" and r["m"] == 1]
    widths = np.array([r["bin_right"] - r["bin_left"] for r in hist])
    assert len(hist) == 8 and np.sum([r["value"] for r in hist] * widths) == pytest.approx(1.0)
    assert json.loads((tmp_path / "summary.json").read_text())["kind"] == "spectra"


def test_run_task_bad_option(tmp_path):
    cfg = validate({"task": "rmt", "task_options": {"kind": "lyapunov", "depth": 10, "bogus": 1}})
    with pytest.raises(UserError, match="bogus"):
        run_task(cfg, tmp_path)
    with pytest.raises(UserError, match="choose one of"):
        run_kind("nope", {})


def test_universality_and_lyapunov_tables():
    t = run_kind("universality", {"n": 40, "ms": [1], "draws": 1, "bins": 5}).table
    assert set(t["dist"]) == {"gaussian", "uniform", "rademacher", "student_t"}
    ly = run_kind("lyapunov", {"n": 8, "depth": 50, "seeds": [0], "dists": ["gaussian", "orthogonal"]}).table
    lam = ly[(ly["metric"] == "lambda") & (ly["dist"] == "orthogonal")]
    assert len(lam) == 8 and np.abs(lam["value"]).max() < 1e-12
    assert set(ly[ly["dist"] == "gaussian"]["product"]) == {"plain", "normalized"}


def test_condition_table_departure():
    t = study.condition(n=16, depth=25, dists=("gaussian",), seeds=(0,), lyapunov_depth=100).table
    dep = t[(t["metric"] == "naive_departure") & (t["product"] == "plain")]["value"].iloc[0]
    assert 5 <= dep <= 25  # naive SVD is fine early and wrong once kappa passes ~1e16
    ex = t[(t["method"] == "exact") & (t["product"] == "plain")].sort_values("depth")["value"].to_numpy()
    assert np.all(np.diff(ex[:10]) > -1.0)


def test_mlp_jacobians_linear_no_bn_is_a_product():
    t = study.mlp_jacobians(width=8, depths=(1, 3), activations=("linear",), batch=16, examples=1).table
    lk = t[(t["metric"] == "ln_kappa") & (~t["bn"])].sort_values("depth")["value"].to_numpy()
    net = study.random_mlp(8, 3, "linear", False, 0)
    w = [b.linear.weight.detach().numpy() for b in net]
    s = np.linalg.svd(w[2] @ w[1] @ w[0], compute_uv=False)
    assert lk[1] == pytest.approx(np.log(s[0] / s[-1]), rel=1e-10)


def test_cli_spectra(tmp_path, capsys):
    from bnlab.cli.main import main

    rc = main(
        [
            "rmt",
            "spectra",
            "--out",
            str(tmp_path),
            "--n",
            "40",
            "--draws",
            "1",
            "--bins",
            "6",
            "--ms",
            "1",
            "2",
            "--dists",
            "gaussian",
            "rademacher",
        ]
    )
    assert rc == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == str(tmp_path)
    for f in ("spectra.csv", "ks.csv", "spectra.png", "spectra_rademacher.png", "universality.png"):
        assert (tmp_path / f).stat().st_size > 0
    assert len(pd.read_csv(tmp_path / "ks.csv")) == 4


def test_mlp_jacobians_exact_product_row_matches_dense():
    t = study.mlp_jacobians(width=8, depths=(2,), activations=("linear",), batch=16, examples=1).table
    t = t[~t["bn"]]
    dense = t[t["metric"] == "ln_kappa"]["value"].iloc[0]
    exact = t[t["metric"] == "ln_kappa_exact_product"]["value"].iloc[0]
    assert exact == pytest.approx(dense, rel=1e-9)
