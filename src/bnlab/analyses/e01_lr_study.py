"""E1 · Fig. 1: the learning rate, not BN itself, buys accuracy.

The design is read from the runs against thresholds measured in the same profile (the spec's max_lr arms):
no-BN's and BN's largest stable lr; the training lrs then have roles — `large`: BN's largest training lr,
`shared`: the largest lr at or below no-BN's max at which both norms train (paired seeds), `small`: the
smallest. The claim is at risk only if BN's max is >= 30x no-BN's, the large lr >= 10x no-BN's max and the
shared lr <= no-BN's max (`design_at_risk`); otherwise the verdict is inconclusive. Accuracy differences
carry a standard error from the seed spread and the binomial error of each test accuracy; a rule about
accuracies counts only where the runs reached a plateau (`plateaued`). "No BN cannot train at the large lr"
counts a run that diverged (loss > 10^3 x its start) and one that ended at chance (a warmed-up lr can drive the
unnormalized net to a constant output instead of blowing it up): both are reported, the rule uses the sum.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from bnlab.analyses.fake import FakeRoot, metrics
from bnlab.analyses.lr_design import lr_roles, nobn_max, plateau_table, thresholds, training_runs
from bnlab.analyses.max_lr_table import fake_max_lr_run
from bnlab.analyses.select import NAN, diverged_note, mean, need_runs, pct_of_training
from bnlab.analyses.spec import Spec
from bnlab.data.cifar import SPECS as CIFAR
from bnlab.figures import lr_curves as plot
from bnlab.store.runset import RunSet

GAP, LARGE, SHARED = 30.0, 10.0, 1.0  # BN/no-BN max-lr gap; large lr / no-BN max; shared lr / no-BN max
TOL = 1e-6  # relative: a bisection's geometric mean is exact to rounding only


def _test_sizes(df: pd.DataFrame) -> np.ndarray:
    """Images in each run's final test evaluation (the whole test split): 10,000 for CIFAR."""
    name = df.get("data.name", pd.Series("cifar10", index=df.index)).astype(str)
    synth = pd.to_numeric(df.get("data.synthetic_test", pd.Series(np.nan, index=df.index)), errors="coerce")
    return np.where(name == "synthetic", synth, 10_000).astype(float)


def _at_chance(df: pd.DataFrame) -> np.ndarray:
    """Complete runs whose final test accuracy is within 2 binomial standard errors of chance (1 / classes)."""
    name = df.get("data.name", pd.Series("cifar10", index=df.index)).astype(str)
    chance = 1.0 / np.array([CIFAR[n].num_classes if n in CIFAR else 10 for n in name], dtype=float)
    acc = pd.to_numeric(df.get("summary.test_acc", pd.Series(np.nan, index=df.index)), errors="coerce")
    se = np.sqrt(chance * (1 - chance) / _test_sizes(df))
    return ((df["state"] == "complete") & (acc.to_numpy() <= chance + 2 * se)).to_numpy()


def _accs(runs: RunSet, norm: str, lr: float) -> pd.DataFrame:
    """Complete training runs of (norm, lr): seed, test accuracy (points) and its binomial variance."""
    g = training_runs(runs, runs.where(model__norm=norm, optim__lr=lr))
    g = g[g["state"] == "complete"]
    acc = pd.to_numeric(g.get("summary.test_acc", pd.Series(dtype=float)), errors="coerce")
    out = pd.DataFrame({"seed": g.get("train.seed", 0), "acc": 100 * acc})
    out["binom"] = 1e4 * acc * (1 - acc) / _test_sizes(g)
    return out[np.isfinite(out["acc"])].reset_index(drop=True)


def _diff(a: pd.DataFrame, b: pd.DataFrame, paired: bool) -> tuple[float, float, int]:
    """mean(a) - mean(b) in points, its standard error (seed spread + binomial test error), n."""
    if paired:
        m = a.merge(b, on="seed", suffixes=("_a", "_b"))
        if not len(m):
            return NAN, NAN, 0
        d = m["acc_a"] - m["acc_b"]
        n = len(d)
        spread = float(d.var(ddof=1)) / n if n > 1 else 0.0
        return float(d.mean()), float(np.sqrt(spread + (m["binom_a"] + m["binom_b"]).sum() / n**2)), n
    if not len(a) or not len(b):
        return NAN, NAN, 0
    var = 0.0
    for x in (a, b):
        n = len(x)
        var += (float(x["acc"].var(ddof=1)) / n if n > 1 else 0.0) + float(x["binom"].sum()) / n**2
    return float(a["acc"].mean() - b["acc"].mean()), float(np.sqrt(var)), min(len(a), len(b))


def quantities(runs: RunSet, spec: Spec) -> dict[str, float]:
    th = thresholds(runs)
    roles = lr_roles(runs, th)
    large, shared, small = roles["large"], roles["shared"], roles["small"]
    nb = nobn_max(th)
    q: dict[str, float] = {
        "nobn_max_lr": nb,
        "bn_max_lr": th.get("batch", NAN),
        "bn_over_nobn_max_lr": th.get("batch", NAN) / nb if nb > 0 else NAN,
        "large_over_nobn_max": large / nb if nb > 0 else NAN,
        "shared_over_nobn_max": shared / nb if nb > 0 else NAN,
    }
    measured = all(
        np.isfinite(q[k]) for k in ("bn_over_nobn_max_lr", "large_over_nobn_max", "shared_over_nobn_max")
    )
    q["design_at_risk"] = (
        float(
            q["bn_over_nobn_max_lr"] >= GAP * (1 - TOL)
            and q["large_over_nobn_max"] >= LARGE * (1 - TOL)
            and q["shared_over_nobn_max"] <= SHARED * (1 + TOL)
        )
        if measured
        else NAN
    )
    if not measured:
        runs.note("the lr roles need both max_lr arms and training runs at a shared lr: design not measured")
    r = training_runs(runs, runs.usable())
    big = (
        r[
            (r.get("model.norm") == "none")
            & np.isclose(pd.to_numeric(r.get("optim.lr"), errors="coerce"), large)
        ]
        if len(r)
        else r
    )
    q["nobn_large_lr_diverged_share"] = float((big["state"] == "diverged").mean()) if len(big) else NAN
    chance = _at_chance(big)
    q["nobn_large_lr_chance_share"] = float(chance.mean()) if len(big) else NAN
    if chance.any():
        runs.note(
            f"no BN at the large lr: {int(chance.sum())} run(s) ended at chance accuracy without diverging"
        )
    q["nobn_large_lr_failed_share"] = (
        q["nobn_large_lr_diverged_share"] + q["nobn_large_lr_chance_share"] if len(big) else NAN
    )
    bn_l, bn_s, nb_s = _accs(runs, "batch", large), _accs(runs, "batch", shared), _accs(runs, "none", shared)
    q["test_acc_bn_large_lr"] = mean(bn_l["acc"])
    q["test_acc_bn_shared_lr"] = mean(bn_s["acc"])
    q["test_acc_nobn_shared_lr"] = mean(nb_s["acc"])
    q["test_acc_bn_small_lr"] = mean(_accs(runs, "batch", small)["acc"])
    q["test_acc_nobn_small_lr"] = mean(_accs(runs, "none", small)["acc"])
    d, se, n = _diff(bn_s, nb_s, paired=True)
    q["bn_minus_nobn_shared_lr"], q["bn_minus_nobn_shared_lr_se"], q["shared_lr_pairs"] = d, se, float(n)
    d, se, _ = _diff(bn_l, bn_s, paired=False)
    q["bn_large_minus_shared_lr"], q["bn_large_minus_shared_lr_se"] = d, se
    p = plateau_table(runs)
    at = (lambda lr: p[np.isclose(p["lr"], lr)]) if len(p) else (lambda lr: p)
    q["shared_lr_plateau_share"] = float(at(shared)["plateau"].mean()) if len(at(shared)) else NAN
    bnl = at(large)
    bnl = bnl[bnl["norm"] == "batch"] if len(bnl) else bnl
    q["bn_large_lr_plateau_share"] = float(bnl["plateau"].mean()) if len(bnl) else NAN
    tr = training_runs(runs, runs.where(model__norm="batch", optim__lr=large))
    tr = tr[tr["state"] == "complete"]
    q["train_acc_bn_large_lr"] = mean(tr.get("summary.train_acc", pd.Series(dtype=float))) * 100
    for name, v in (("large", large), ("shared", shared), ("small", small)):
        runs.note(f"{name} lr: {v:g}") if np.isfinite(v) else runs.note(f"no {name} lr in this design")
    return q


def _curve(runs: RunSet, row: pd.Series, m: pd.DataFrame, splits: tuple[str, ...]) -> tuple | None:
    split = next((s for s in splits if (m["split"] == s).any()), None)
    if split is None:
        return None
    ms = m[m["split"] == split].sort_values("step")
    y = pd.to_numeric(ms["acc"], errors="coerce").to_numpy(float) * 100
    ok = np.isfinite(y)
    if (~ok).any():
        runs.note(f"run {row['run_id']}: {int((~ok).sum())} non-finite {split} accuracies left out")
    return (pct_of_training(row, ms)[ok], y[ok]) if ok.any() else None


def lr_curves(runs: RunSet, spec: Spec) -> Figure:
    """E1 / Fig. 1: train and test accuracy vs % of training per (norm, lr): every run thin, the mean thick;
    one colour per lr, solid BN, dashed no BN; x marks where a run diverged."""
    r = need_runs(runs, "lr_curves", training_runs(runs))
    diverged_note(runs, r)
    arms: dict[tuple[str, float], plot.Arm] = {}
    for _, row in r.iterrows():
        m = runs.metrics(row)
        if m.empty or "split" not in m.columns:
            runs.note(f"run {row['run_id']} ({runs.label(row)}): no metrics, left out")
            continue
        key = (str(row["model.norm"]), float(row["optim.lr"]))
        arm = arms.setdefault(key, plot.Arm(*key))
        for which, splits in (("train", ("train_eval", "train")), ("test", ("test", "val"))):
            c = _curve(runs, row, m, splits)
            if c is not None:
                getattr(arm, which).append(c)
                if which == "test" and row["state"] == "diverged":
                    arm.diverged.append((float(c[0][-1]), float(c[1][-1])))
    return plot.accuracy_curves(sorted(arms.values(), key=lambda a: (-a.lr, a.norm)))


def lr_final_table(runs: RunSet, spec: Spec) -> Figure:
    """E1: final test accuracy per (norm, lr), mean ± std over seeds; diverged runs hatched, not averaged."""
    r = need_runs(runs, "lr_final_table", training_runs(runs))
    # BN first, then no BN; each from the largest lr down (the order of the paper's claim)
    r = r.assign(_bn=r.get("model.norm") != "batch", _lr=-pd.to_numeric(r.get("optim.lr"), errors="coerce"))
    r = r.sort_values(["_bn", "_lr"], kind="stable").drop(columns=["_bn", "_lr"])
    labels = runs.labels(r, exclude=("train.seed", "task"))
    rows = []
    for label in dict.fromkeys(labels):
        g = r[labels.to_numpy() == label]
        acc = pd.to_numeric(
            g[g["state"] == "complete"].get("summary.test_acc", pd.Series(dtype=float)), errors="coerce"
        )
        acc = 100 * acc[np.isfinite(acc)]
        ndiv = int((g["state"] == "diverged").sum())
        if ndiv:
            runs.note(f"{label}: {ndiv} diverged run(s) shown hatched, not averaged")
        std = float(acc.std(ddof=0)) if len(acc) > 1 else 0.0
        rows.append((label, float(acc.mean()) if len(acc) else NAN, std, len(acc), ndiv))
    return plot.final_bars(rows, "final test accuracy (mean ± std over seeds)")


def lr_design(runs: RunSet, spec: Spec) -> Figure:
    """E1: the training lrs (markers) against the largest stable lr measured in the same profile (bars)."""
    th = thresholds(runs)
    r = training_runs(runs)
    lrs = (
        {str(n): sorted(set(pd.to_numeric(g["optim.lr"]))) for n, g in r.groupby("model.norm")}
        if len(r)
        else {}
    )
    if not th and not lrs:
        need_runs(runs, "lr_design", r.iloc[0:0])
    return plot.lr_design(th, lr_roles(runs, th), lrs)


FIGURES = {"lr_curves": lr_curves, "lr_final_table": lr_final_table, "lr_design": lr_design}


PLATEAU = [0.3, 0.6, 0.9, 0.96, 0.97, 0.99, 1.0, 1.0, 1.0, 1.0]  # train_eval accuracy at 10 evaluations


def write_fake(
    root: Path,
    profile: str,
    *,
    nobn_max: float | None = 0.01,
    bn_shared: float = 0.70,
    nobn_shared: float = 0.70,
    bn_large: float = 0.80,
    nobn_large: str = "diverged",
    nobn_large_acc: float = 0.5,
    curve: list[float] = PLATEAU,
    seeds: int = 3,
    spread: float = 0.0,
    small: bool = True,
) -> None:
    """Synthetic E1 runs: max_lr arms (BN 0.9, no BN `nobn_max`; None: not measured), BN at the large lr 0.1,
    both norms at the shared lr 0.003 (`seeds` paired seeds, accuracy + 0.003 per seed, no BN's ± `spread`
    alternating), 5e-4 for both when `small`, no BN at 0.1 in state `nobn_large` (if complete: test accuracy
    `nobn_large_acc`); every training run's
    train_eval accuracy follows `curve`."""
    r = FakeRoot(root, profile)
    base = {
        "model.init.conv": "kaiming_fan_in",
        "model.depth": 20,
        "train.epochs": 60.0,
        "data.name": "cifar10",
    }
    fake_max_lr_run(r, "E1", {**base, "model.norm": "batch"}, 0.9)
    if nobn_max is not None:
        fake_max_lr_run(r, "E1", {**base, "model.norm": "none"}, nobn_max)
    arms = [("batch", 0.1, s, bn_large + 0.004 * s) for s in range(seeds)]
    arms += [("batch", 0.003, s, bn_shared + 0.003 * s) for s in range(seeds)]
    arms += [
        ("none", 0.003, s, nobn_shared + 0.003 * s + spread * (1 if s % 2 else -1)) for s in range(seeds)
    ]
    if small:
        arms += [("batch", 0.0005, 0, 0.62), ("none", 0.0005, 0, 0.61)]
    for norm, lr, seed, acc in arms:
        d = r.run(
            "E1",
            {**base, "model.norm": norm, "optim.lr": lr, "train.seed": seed},
            step=1400,
            summary={"test_acc": acc, "train_acc": 1.0},
        )
        metrics(d, curve, epochs=60.0)
    diverged = nobn_large == "diverged"
    d = r.run(
        "E1",
        {**base, "model.norm": "none", "optim.lr": 0.1},
        state=nobn_large,
        step=3,
        reason="loss 1e4 > 1e3" if diverged else None,
        summary=None if diverged else {"test_acc": nobn_large_acc, "train_acc": 0.6},
    )
    metrics(d, [0.1, 0.1], diverge=diverged, epochs=60.0)


def fake_runs(root: Path, profile: str) -> str:
    """Measured thresholds (BN 0.9, no BN 0.01), BN at 0.1 and both norms at 0.003 (3 paired seeds, BN 0.2
    points ahead, plateaued), 5e-4 for both, no BN diverged at 0.1: every rule reproduced."""
    write_fake(root, profile, bn_shared=0.702)
    return "reproduced"
