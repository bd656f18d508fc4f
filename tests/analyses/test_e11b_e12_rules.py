"""E11b, E12b, E12c and E12d on synthetic runs: each rule gives every verdict (reproduced, partly, not,
inconclusive), and a BN / no-BN largest-stable-lr gap below 10x (the two nets equally stable: nothing for a
single norm, a small batch, a bias fix or an init to recover) gives "inconclusive", never a verdict; the gap is
reported as a value beside each verdict."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pytest

from bnlab.analyses import e11b_single_norm, e12b_small_batch, e12c_bias_fix, e12d_init_zoo
from bnlab.analyses.spec import find_specs
from bnlab.report.study import collect_section
from bnlab.store.runset import RunSet

WRITERS = {
    "E11b": e11b_single_norm.write_fake,
    "E12b": e12b_small_batch.write_fake,
    "E12c": e12c_bias_fix.write_fake,
    "E12d": e12d_init_zoo.write_fake,
}
GAP = "bn_over_nobn_max_lr"

CASES = [
    # E11b: share of BN's log10 max-lr gain taken by the best single final norm (lrs: all, prepool, prefc, none)
    ("E11b", {}, "reproduced", ""),  # share 2/3
    ("E11b", {"lrs": (1.0, 1e-2, 5e-3, 1e-3)}, "partly", "[0.25, 1.2]"),  # share 1/3
    ("E11b", {"lrs": (1.0, 1.5e-3, 1.2e-3, 1e-3)}, "not", ""),  # share 0.06
    ("E11b", {"lrs": (0.01, 0.01, 0.01, 0.01)}, "inconclusive", GAP),  # the same largest stable lr
    ("E11b", {"lrs": (0.05, 0.02, 0.01, 0.01)}, "inconclusive", GAP),  # gap 5x
    # E12b: share of the BN - no-BN (|B| 128) accuracy gap closed by |B| 8 (no BN's accs at |B| 8, 32, 128)
    ("E12b", {"nobn_accs": (0.57, 0.52, 0.50)}, "reproduced", ""),  # 0.7
    ("E12b", {"nobn_accs": (0.52, 0.51, 0.50)}, "partly", ">= 0.1"),  # 0.2
    ("E12b", {"nobn_accs": (0.49, 0.50, 0.50)}, "not", ""),  # -0.1: smaller batches are worse
    ("E12b", {"bn_max": 0.01}, "inconclusive", GAP),  # the same largest stable lr
    ("E12b", {"nobn_lr_scale": 5.0}, "inconclusive", "nobn_lr_over_own_max_high"),  # above its own max
    ("E12b", {"nobn_lr_scale": 0.3}, "inconclusive", "nobn_lr_over_own_max_low"),  # far below it
    ("E12b", {"diverged": 8}, "inconclusive", "nobn_diverged_share"),  # the smallest batch diverged
    ("E12b", {"bn_epochs": 60.0}, "inconclusive", "same_budget"),  # BN trained twice as long
    ("E12b", {"bn_acc": 0.51}, "inconclusive", "bn_minus_nobn_largest_batch"),  # no gap to close
    # E12c: no BN's top-class share (balanced) and max lr balanced / default; BN's max lr `bn_lr`
    ("E12c", {}, "reproduced", ""),
    ("E12c", {"nobn_lr": (1e-3, 1.5e-3)}, "partly", ""),  # share fixed, max lr only 1.5x
    ("E12c", {"nobn_lr": (1e-3, 1e-3), "nobn_share": (0.9, 0.9)}, "not", ""),
    ("E12c", {"bn_lr": 1e-3}, "inconclusive", GAP),  # BN no more stable than no BN
    # E12d: best other init / Xavier (no BN); BN's max lr at Xavier `bn`
    ("E12d", {}, "reproduced", ""),  # Fixup 20x
    ("E12d", {"others": (3e-3, 5e-3)}, "partly", ">= 2"),  # 5x
    ("E12d", {"others": (1e-3, 1.5e-3)}, "not", ""),  # 1.5x
    ("E12d", {"bn": 5e-3}, "inconclusive", GAP),  # gap 5x
    ("E12d", {"bn": None}, "inconclusive", GAP),  # no BN arm: the gap is not measured
]


def section(sid, kw, tmp_path):
    root = tmp_path / "runs"
    WRITERS[sid](root, "cpu", **kw)
    (tmp_path / "fig").mkdir(exist_ok=True)
    spec = find_specs([sid])[0]
    return collect_section(spec, RunSet.open(root), root, "cpu", tmp_path / "fig", {})


@pytest.mark.parametrize("sid,kw,want,why", CASES, ids=[f"{c[0]}-{c[2]}-{i}" for i, c in enumerate(CASES)])
def test_rule_gives_every_verdict_on_synthetic_runs(sid, kw, want, why, tmp_path):
    sec = section(sid, kw, tmp_path)
    assert sec.verdict.verdict == want, sec.verdict.reason
    assert why in sec.verdict.reason


def test_every_verdict_is_reachable_per_experiment():
    for sid in WRITERS:
        assert {c[2] for c in CASES if c[0] == sid} == {"reproduced", "partly", "not", "inconclusive"}, sid


@pytest.mark.parametrize(
    "sid,kw,gap",
    [("E11b", {}, 1000.0), ("E12b", {}, 800.0), ("E12c", {}, 1000.0), ("E12d", {"bn": 2.0}, 2000.0)],
)
def test_the_measured_gap_is_reported_beside_the_verdict(sid, kw, gap, tmp_path):
    rows = {r.key: r for r in section(sid, kw, tmp_path).rows}
    assert rows[GAP].ours == pytest.approx(gap, rel=1e-9)
    assert "measured here" in rows[GAP].quantity


def test_e12b_matching_batch_and_noise_scales_follow_the_configs(tmp_path):
    q = {r.key: r.ours for r in section("E12b", {}, tmp_path).rows}
    # cpu spec: no BN's largest training lr 0.005, BN at 0.1 with |B| 128, both momentum 0.9: 0.005 x 128 / 0.1
    assert q["matching_batch_size"] == pytest.approx(6.4, rel=1e-12)
    assert q["bn_noise_scale"] == pytest.approx(0.1 / (0.1 * 128), rel=1e-12)
    # the synthetic |B| 8 run: half its own max 0.004
    assert q["noise_scale_smallest_batch"] == pytest.approx(0.002 / (0.1 * 8), rel=1e-12)
    assert q["nobn_lr_over_own_max_low"] == pytest.approx(0.5) and q[
        "nobn_lr_over_own_max_high"
    ] == pytest.approx(0.5)
    assert q["same_budget"] == 1.0 and q["nobn_diverged_share"] == 0.0
    assert q["gap_closed_by_smallest_batch"] == pytest.approx(0.5, rel=1e-9)
