"""E16 · Cohen et al. 2021: under full-batch gradient descent at step size η, the sharpness λ_max rises to
≈ 2/η and hovers there (the edge of stability) while the loss keeps falling, non-monotonically.

Reads hessian_top_eig rows (λ_max of the full-batch loss, BN in training mode on the full batch; the probe
gives lambda_lr = η·λ_max and the stability limit 2 for momentum 0, so ratio = lambda_lr / limit = λ_max·η/2)
and the per-step train loss (metrics.jsonl, split train: one row per step when eval_every is one epoch =
one full-batch step). Per run: the median ratio over the probes in the last (1 - LATE) of training and its
standard error (1.2533·sd/√n); per norm the mean over learning rates, with the larger of the within-run and
between-run standard errors. No learning rate is typed here: they are the runs' own."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from bnlab.analyses.fake import FakeRoot, probe
from bnlab.analyses.probe_rows import probe_rows
from bnlab.analyses.select import NAN, need_runs
from bnlab.analyses.spec import Spec
from bnlab.errors import UserError
from bnlab.figures.edge_of_stability import edge_of_stability
from bnlab.store.runset import RunSet

PROBE = "hessian_top_eig"
LATE = 0.5  # the "last part of training": probes and loss steps at or after this fraction of the run
NAMES = (("batch", "bn"), ("none", "nobn"))


def _group(norm: object) -> str:
    return "no BN" if norm == "none" else "BN"


def sharpness(runs: RunSet) -> pd.DataFrame:
    """One row per (run, probe step): run_id, norm, lr, step, lambda_max, threshold (2/η), ratio (λ_max·η/2)."""
    r = runs.usable()
    t = probe_rows(runs, PROBE, r)
    if t.empty:
        return pd.DataFrame()
    w = t.pivot_table(
        index=["run_id", "step"], columns="metric", values="value", aggfunc="first"
    ).reset_index()
    if not {"lambda_max", "lambda_lr", "limit"} <= set(w.columns):
        runs.note(f"{PROBE} rows lack lambda_max, lambda_lr or limit")
        return pd.DataFrame()
    cfg = r.set_index("run_id")
    lr = w["run_id"].map(cfg["optim.lr"]).astype(float)
    return pd.DataFrame(
        {
            "run_id": w["run_id"],
            "norm": w["run_id"].map(cfg["model.norm"]),
            "lr": lr,
            "step": w["step"].astype(int),
            "lambda_max": w["lambda_max"].astype(float),
            "threshold": w["limit"].astype(float) / lr,
            "ratio": (w["lambda_lr"] / w["limit"]).astype(float),
        }
    )


def losses(runs: RunSet) -> pd.DataFrame:
    """One row per (run, step) of the train loss: run_id, norm, lr, step, loss."""
    frames = []
    for _, row in runs.usable().iterrows():
        m = runs.metrics(row)
        if m.empty or "split" not in m.columns:
            continue
        m = m[m["split"] == "train"].sort_values("step")
        frames.append(
            pd.DataFrame(
                {
                    "run_id": row["run_id"],
                    "norm": row["model.norm"],
                    "lr": float(row["optim.lr"]),
                    "step": m["step"].astype(int),
                    "loss": pd.to_numeric(m["loss"], errors="coerce"),
                }
            )
        )
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _late(df: pd.DataFrame) -> pd.DataFrame:
    last = df["step"].max()
    return df[df["step"] >= LATE * last]


def quantities(runs: RunSet, spec: Spec) -> dict[str, float]:
    q = dict.fromkeys((v.key for v in spec.paper.values), NAN)
    s = sharpness(runs)
    starts = []
    for norm, name in NAMES:
        g = s[s["norm"] == norm] if len(s) else s
        meds, ses, first = [], [], []
        for _, d in g.groupby("run_id") if len(g) else []:
            d = d.sort_values("step")
            first.append(float(d["ratio"].iloc[0]))
            v = _late(d)["ratio"].to_numpy(float)
            v = v[np.isfinite(v)]
            if len(v) >= 2:
                meds.append(float(np.median(v)))
                ses.append(1.2533 * float(v.std(ddof=1)) / math.sqrt(len(v)))
        if meds:
            k = len(meds)
            within = math.sqrt(sum(e**2 for e in ses)) / k
            between = float(np.std(meds, ddof=1)) / math.sqrt(k) if k >= 2 else 0.0
            q[f"eos_ratio_{name}"] = float(np.mean(meds))
            q[f"eos_ratio_{name}_se"] = max(within, between)
            q[f"eos_ratio_{name}_minus_1"] = float(np.mean(meds)) - 1
            q[f"initial_ratio_{name}"] = float(np.mean(first))
            starts += first
        else:
            runs.note(
                f"{'no BN' if norm == 'none' else 'BN'}: no run with >= 2 finite λ_max in its last part"
            )
    if starts:
        q["initial_ratio_max"] = max(starts)
    loss = losses(runs)
    inc, drop = [], []
    for _, d in loss.groupby("run_id") if len(loss) else []:
        v = d.sort_values("step")["loss"].to_numpy(float)
        if len(v) < 3 or not np.all(np.isfinite(v)):
            runs.note(f"run {d['run_id'].iloc[0]}: fewer than 3 finite train-loss steps")
            continue
        late = v[int(LATE * (len(v) - 1)) :]
        inc.append(float(np.mean(np.diff(late) > 0)))
        drop.append(float(v[-1] / v[0]))
    if inc:
        q["loss_increase_fraction_min"] = min(inc)
        q["final_over_initial_loss_max"] = max(drop)
    return {k: float(v) for k, v in q.items()}


def edge(runs: RunSet, spec: Spec) -> Figure:
    """E16: full-batch training loss and λ_max against the step per η, with 2/η (Cohen et al. Fig. 1), BN and no BN."""
    need_runs(runs, "edge")
    s, loss = sharpness(runs), losses(runs)
    if s.empty or loss.empty:
        raise UserError(f"no {PROBE} rows or no train losses")
    s = runs.finite(s, "lambda_max", "λ_max")
    return edge_of_stability(
        loss.assign(group=loss["norm"].map(_group)), s.assign(group=s["norm"].map(_group))
    )


FIGURES = {"edge": edge}


def write_fake(
    root: Path,
    profile: str,
    *,
    plateau: float = 1.0,
    start: float = 0.3,
    wiggle: float = 0.05,
    decay: float = 300.0,
    lrs: tuple[float, ...] = (0.02, 0.05),
    steps: int = 400,
) -> None:
    """Synthetic E16 runs: λ_max rising from `start` to `plateau` × 2/η over the first half and hovering there
    (± 3 %), the loss falling as exp(-t/decay) with a `wiggle` up every other step."""
    r = FakeRoot(root, profile)
    for norm in ("batch", "none"):
        for lr in lrs:
            d = r.run(
                "E16",
                {"model.name": "mlp", "model.norm": norm, "optim.lr": lr, "optim.momentum": 0.0},
                step=steps,
            )
            rows = []
            for t in range(0, steps + 1, 25):
                lam = (
                    (2 / lr)
                    * (start + (plateau - start) * min(1.0, t / (steps / 2)))
                    * (1 + 0.03 * math.sin(t))
                )
                for m, v in (("lambda_max", lam), ("lambda_lr", lam * lr), ("limit", 2.0)):
                    rows.append({"metric": m, "value": v, "step": t, "norm_stats": norm})
            probe(d, PROBE, rows)
            with open(d / "metrics.jsonl", "w") as f:
                for t in range(1, steps + 1):
                    loss = 2.3 * math.exp(-t / decay) * (1 + wiggle * (t % 2))
                    f.write(
                        json.dumps({"step": t, "epoch": t, "split": "train", "loss": loss, "acc": None})
                        + "\n"
                    )


def fake_runs(root: Path, profile: str) -> str:
    """λ_max·η/2 hovering at 1 ± 3 % over the last half, loss falling with increases every other step: reproduced."""
    write_fake(root, profile)
    return "reproduced"
