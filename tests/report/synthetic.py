"""A small synthetic runs root, written by hand (no training): every experiment spec gets run directories
with the files the report reads (config.yaml, status.json, summary.json, meta.json, env.json, metrics.jsonl,
probes/*.jsonl + .npz). The numbers are chosen so that, under a comparable profile, the verdict rules give
known answers (see EXPECTED)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import yaml

ENV = {
    "python": "3.11",
    "torch": "2.x",
    "numpy": "2.x",
    "bnlab": "0.1.0",
    "cuda": None,
    "device": "cpu",
    "device_name": "test",
    "threads": 2,
    "git_sha": "0123456789abcdef",
    "git_dirty": False,
}

# experiment -> verdict under a comparable profile (cpu) for the data below
EXPECTED = {
    "E1": "inconclusive",
    "E2": "reproduced",
    "E3": "reproduced",
    "E4": "reproduced",
    "E5": "reproduced",
    "E6": "reproduced",
    "E7": "reproduced",
    "E8": "reproduced",
    "E9": "reproduced",
    "E9b": "inconclusive",
    "E10": "reproduced",
    "E11a": "reproduced",
    "E11b": "reproduced",
    "E12a": "partly",
    "E12b": "partly",
    "E12c": "reproduced",
    "E12d": "reproduced",
    "E12e": "reproduced",
}


def _nest(flat: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in flat.items():
        d = out
        parts = k.split(".")
        for p in parts[:-1]:
            d = d.setdefault(p, {})
        d[parts[-1]] = v
    return out


class Root:
    def __init__(self, path: Path, profile: str) -> None:
        self.path, self.profile = path, profile
        self.path.mkdir(parents=True, exist_ok=True)

    def run(
        self,
        exp: str,
        cfg: dict[str, Any],
        *,
        state: str = "complete",
        step: int = 0,
        summary: dict[str, Any] | None = None,
        reason: str | None = None,
    ) -> Path:
        flat = {
            "model.name": "resnet_cifar",
            "model.depth": 8,
            "model.init.conv": "xavier",
            "model.block": "post",
            "model.placement": "all",
            "model.norm": "batch",
            "model.init.balanced_output_bias": False,
            "model.fixup": False,
            "model.skipinit": False,
            "optim.lr": 0.1,
            "optim.momentum": 0.9,
            "optim.batch_size": 128,
            "train.seed": 0,
            "train.steps": None,
            "train.epochs": 2.0,
            "task": "train",
        }
        flat.update(cfg)
        rid = hashlib.sha1(
            json.dumps([exp, self.profile, sorted(flat.items(), key=str)], default=str).encode()
        ).hexdigest()[:12]
        d = self.path / rid
        (d / "probes").mkdir(parents=True, exist_ok=True)
        (d / "config.yaml").write_text(yaml.safe_dump(_nest(flat)))
        (d / "status.json").write_text(
            json.dumps(
                {"state": state, "step": step, "reason": reason, "loss": None, "warnings": [], "schema": 1}
            )
        )
        (d / "summary.json").write_text(json.dumps(summary or {}))
        (d / "meta.json").write_text(json.dumps({"experiments": [f"{exp}/{self.profile}"]}))
        (d / "env.json").write_text(json.dumps(ENV))
        return d


def probe(
    d: Path, name: str, rows: list[dict[str, Any]], arrays: dict[str, np.ndarray] | None = None
) -> None:
    with open(d / "probes" / f"{name}.jsonl", "w") as f:
        for r in rows:
            f.write(json.dumps({"probe": name, "layer": "model", "paper_layer": None, "step": 0, **r}) + "\n")
    if arrays:
        np.savez_compressed(d / "probes" / f"{name}.npz", **arrays)


def metrics(d: Path, accs: list[float], diverge: bool = False) -> None:
    with open(d / "metrics.jsonl", "w") as f:
        for i, a in enumerate(accs):
            for split in ("train_eval", "test"):
                f.write(
                    json.dumps(
                        {
                            "step": (i + 1) * 10,
                            "epoch": 2.0 * (i + 1) / len(accs),
                            "split": split,
                            "loss": 1.0,
                            "acc": a if not (diverge and i == len(accs) - 1) else float("nan"),
                            "lr": 0.1,
                            "wall_s": i,
                        }
                    )
                    + "\n"
                )


def make_root(path: Path, profile: str = "cpu") -> Path:
    rng = np.random.default_rng(0)
    r = Root(path, profile)
    # E1: BN at 3 lrs, no BN at 1e-4 (complete) and at 0.1 (diverged, with a NaN accuracy)
    for norm, lr, acc in (
        ("batch", 0.1, 0.93),
        ("batch", 0.003, 0.90),
        ("batch", 0.0001, 0.81),
        ("none", 0.0001, 0.82),
    ):
        for seed in (0, 1):
            d = r.run(
                "E1",
                {"model.norm": norm, "optim.lr": lr, "train.seed": seed},
                step=40,
                summary={"test_acc": acc + 0.005 * seed, "train_acc": 1.0},
            )
            metrics(d, list(np.linspace(0.1, acc, 4)))
    d = r.run(
        "E1", {"model.norm": "none", "optim.lr": 0.1}, state="diverged", step=3, reason="loss 1e4 > 1e3"
    )
    metrics(d, [0.1, 0.1], diverge=True)
    # E2
    for norm, mode, alpha in (("batch", "batch_stats", 0.1), ("none", "none", 1e-4)):
        d = r.run("E2", {"model.norm": norm, "optim.lr": alpha}, step=6)
        rows = []
        for step, a in ((0, alpha), (6, alpha / 10)):
            s = a * a / 16
            for m, v in (
                ("alpha_sq_over_b", s),
                ("noise", 5 * s),
                ("bound", 6 * s),
                ("noise_over_bound", 5 / 6),
            ):
                rows.append({"metric": m, "value": v, "se": 0.1 * v, "step": step, "norm_mode": mode})
        probe(d, "sgd_noise", rows)
    # E3
    for norm, mode, scale, kurt in (("batch", "batch_stats", 0.01, 0.2), ("none", "none", 1.0, 20.0)):
        d = r.run("E3", {"model.norm": norm})
        rows = [
            {
                "metric": m,
                "value": v,
                "layer": "layer2.1.conv2",
                "paper_layer": 55,
                "batch": b,
                "norm_mode": mode,
            }
            for b in (0, 1)
            for m, v in (("std", scale), ("kurtosis", kurt))
        ]
        arrays = {}
        for b in (0, 1):
            counts, edges = np.histogram(rng.standard_t(3, 5000) * scale, bins=40)
            arrays[f"step0/b{b}/layer2.1.conv2/hist_counts"] = counts
            arrays[f"step0/b{b}/layer2.1.conv2/hist_edges"] = edges
        probe(d, "gradient_histogram", rows, arrays)
    # E4
    eta = np.geomspace(1e-5, 1, 16)
    for norm, mode, crit in (("batch", "batch_stats", 0.1), ("none", "none", 1e-3)):
        d = r.run("E4", {"model.norm": norm, "optim.lr": 0.1 if norm == "batch" else 1e-4}, step=7)
        rows = []
        for step in (0, 3, 6):
            ratio = np.where(eta < crit, 1 - 0.3 * eta / crit, (eta / crit) ** 3)
            ratio[-1] = np.inf  # an overflowed loss: must be named, not drawn
            rows += [
                {
                    "metric": "ratio",
                    "value": float(v),
                    "eta": float(e),
                    "direction": "gradient",
                    "step": step,
                    "norm_mode": mode,
                }
                for e, v in zip(eta, ratio)
            ]
        probe(d, "step_size_scan", rows)
    # E5
    d = r.run("E5", {"model.norm": "none", "optim.lr": 1.0}, step=5)
    s = np.linspace(0, 1, 5)
    arrays = {"step4/s": s, "step4/loss": 10 ** (4 * s)}
    rows = []
    for layer, pl, orders in (("layer1.0", 8, 0.0), ("layer2.0", 44, 3.0), ("layer3.0", 80, 8.0)):
        mean = 10 ** (orders * s[:, None]) * rng.uniform(0.5, 1.5, (5, 16))
        var = mean**2
        if layer == "layer3.0":
            var[-1, 0] = np.inf
        arrays[f"step4/mean/{layer}"], arrays[f"step4/var/{layer}"] = mean, var
        rows.append(
            {
                "metric": "max_abs_mean",
                "value": float(mean[-1].max()),
                "layer": layer,
                "paper_layer": pl,
                "s": 1.0,
            }
        )
    probe(d, "diverging_step", rows, arrays)
    # E6
    for norm, mode, growth in (("batch", "batch_stats", 0.0), ("none", "none", 3.0)):
        d = r.run("E6", {"model.norm": norm})
        rows = []
        for i, pl in enumerate((6, 18, 30, 42)):
            v = growth * i / 3
            rows += [
                {"metric": m, "value": val, "layer": f"block{i}", "paper_layer": pl, "norm_mode": mode}
                for m, val in (
                    ("log10_abs_mean", v),
                    ("log10_abs_mean_sd", 0.1),
                    ("log10_std", v),
                    ("log10_std_sd", 0.1),
                )
            ]
        probe(d, "activation_moments", rows)
    # E7
    for norm, mode, share, dep in (("batch", "batch_stats", 0.3, 0.3), ("none", "none", 0.98, 0.01)):
        d = r.run("E7", {"model.norm": norm})
        dz = rng.normal(0, 0.01, (32, 10))
        probe(
            d,
            "output_bias",
            [
                {"metric": "top_class_share", "value": share, "norm_mode": mode},
                {"metric": "input_dependence", "value": dep, "norm_mode": mode},
            ],
            {"step0/dL_dz": dz},
        )
    # E8
    for norm, mode, ratio in (("batch", "batch_stats", 100.0), ("none", "none", 2.0)):
        d = r.run("E8", {"model.norm": norm})
        rows = [
            {
                "metric": "ratio",
                "value": ratio * (1 + i),
                "reduce": red,
                "layer": f"conv{i}",
                "paper_layer": pl,
                "norm_mode": mode,
            }
            for red in ("spatial", "batch", "all")
            for i, pl in enumerate((18, 54, 90))
        ]
        rows.append(
            {
                "metric": "ratio",
                "value": 0.0,
                "reduce": "all",
                "layer": "conv9",
                "paper_layer": 100,
                "norm_mode": mode,
            }
        )
        probe(d, "kernel_alignment", rows)
    # E9
    for norm, mode, top in (("batch", "batch_stats", 0.3), ("none", "none", 0.95)):
        d = r.run("E9", {"model.norm": norm})
        layers = [f"layer{i}.conv" for i in range(6)]
        rows = [
            {"metric": "top1_share", "value": top, "matrix": mx, "layer": n, "norm_mode": mode}
            for n in layers
            for mx in ("gradient", "activation")
        ]
        sv = {f"step0/{n}/gradient_sv": np.sort(rng.uniform(0, 1, 8))[::-1] for n in layers}
        probe(d, "gradient_spectrum", rows, sv)
    # E9b
    for norm, mode in (("batch", "batch_stats"), ("none", "none")):
        d = r.run("E9b", {"model.norm": norm})
        probe(
            d,
            "gradient_variance",
            [
                {
                    "metric": m,
                    "value": v,
                    "layer": f"conv{i}",
                    "paper_layer": i + 1,
                    "norm_mode": mode,
                    "per_example": "coupled",
                }
                for i in range(3)
                for m, v in (("intra_layer", 1e-3), ("intra_batch", 1e-2))
            ],
        )
    # E10: one run per kind (only the three figures' probes)
    d = r.run("E10", {"task": "rmt", "model.norm": "none"})
    rows = []
    for m in (1, 3):
        edges = np.linspace(0, (m + 1) ** (m + 1) / m**m, 11)
        for lo, hi in zip(edges[:-1], edges[1:]):
            rows.append(
                {
                    "metric": "hist_density",
                    "value": 1 / edges[-1],
                    "dist": "gaussian",
                    "m": m,
                    "n": 50,
                    "draws": 1,
                    "bin_left": lo,
                    "bin_right": hi,
                }
            )
        rows.append(
            {
                "metric": "ks",
                "value": 0.01,
                "dist": "gaussian",
                "m": m,
                "n": 50,
                "draws": 1,
                "bin_left": None,
                "bin_right": None,
            }
        )
    probe(d, "rmt_spectra", rows)
    d = r.run("E10", {"task": "rmt", "model.norm": "batch"})
    rows = [
        {
            "metric": "ln_kappa",
            "value": 2.0 * depth,
            "dist": "gaussian",
            "product": product,
            "method": method,
            "depth": depth,
            "seed": 0,
            "n": 16,
        }
        for depth in range(1, 9)
        for product, method in (("plain", "exact"), ("plain", "closed_form"), ("normalized", "exact"))
    ]
    probe(d, "rmt_condition", rows)
    d = r.run("E10", {"task": "rmt", "model.norm": "batch", "model.depth": 2})
    rows = [
        {
            "metric": m,
            "value": 1.0 * depth,
            "activation": act,
            "bn": bn,
            "depth": depth,
            "example": 0,
            "width": 8,
            "mode": "batch",
            "resolved": 1.0,
        }
        for act in ("linear", "relu")
        for bn in (False, True)
        for depth in (1, 2, 4)
        for m in ("ln_kappa", "ln_kappa_nonzero")
    ]
    probe(d, "rmt_jacobian", rows)

    # max-lr experiments
    def max_lr(exp: str, cfg: dict[str, Any], lr: float, censored: bool = False) -> None:
        r.run(
            exp,
            {"task": "max_lr", **cfg},
            summary={
                "max_stable_lr": lr,
                "min_unstable_lr": lr * 2,
                "censored": censored,
                "steps": 6,
                "seeds": [0],
            },
        )

    for depth in (8, 20):
        max_lr("E11a", {"model.depth": depth, "model.norm": "batch"}, 1.0, censored=True)
        max_lr("E11a", {"model.depth": depth, "model.norm": "none"}, 1e-2 if depth == 8 else 1e-3)
    for placement, lr, acc in (
        ("all", 1.0, 0.8),
        ("final_prepool", 0.1, 0.7),
        ("final_prefc", 0.05, 0.65),
        ("none", 1e-3, 0.5),
    ):
        max_lr("E11b", {"model.placement": placement, "model.norm": "batch"}, lr)
        r.run("E11b", {"model.placement": placement, "optim.lr": 1e-4}, summary={"test_acc": acc})
    for norm, lr in (("batch", 1.0), ("group", 0.5), ("layer", 1e-3), ("none", 1e-3)):
        max_lr("E12a", {"model.norm": norm}, lr)
    for bs, acc in ((8, 0.6), (32, 0.55), (128, 0.5)):
        r.run(
            "E12b",
            {"model.norm": "none", "optim.lr": 1e-4, "optim.batch_size": bs},
            summary={"test_acc": acc},
        )
    for norm in ("batch", "none"):
        for bal in (False, True):
            d = r.run("E12c", {"model.norm": norm, "model.init.balanced_output_bias": bal})
            probe(
                d,
                "output_bias",
                [{"metric": "top_class_share", "value": 0.2 if bal else 0.9, "norm_mode": "none"}],
            )
            max_lr(
                "E12c", {"model.norm": norm, "model.init.balanced_output_bias": bal}, 1e-2 if bal else 1e-3
            )
    for conv, fix, skip, lr in (
        ("xavier", False, False, 1e-3),
        ("orthogonal", False, False, 3e-3),
        ("kaiming_fan_in", True, False, 2e-2),
    ):
        max_lr(
            "E12d",
            {"model.norm": "none", "model.init.conv": conv, "model.fixup": fix, "model.skipinit": skip},
            lr,
        )
    # E12e: geometry and curvature along a few steps
    for norm, mode, frac, lam in (("batch", "batch_stats", 0.1, 3.0), ("none", "none", 0.6, 0.5)):
        d = r.run("E12e", {"model.norm": norm, "optim.lr": 0.1 if norm == "batch" else 1e-4}, step=4)
        geo = [
            {
                "metric": "input_independent_fraction",
                "value": frac * (1 + 0.1 * st),
                "step": st,
                "norm_mode": mode,
            }
            for st in (0, 4)
        ]
        geo += [
            {
                "metric": "radial_fraction",
                "value": 0.2,
                "direction": "mean_gradient",
                "layer": f"conv{i}",
                "step": st,
                "norm_mode": mode,
            }
            for i in range(3)
            for st in (0, 4)
        ]
        probe(d, "gradient_geometry", geo)
        hess = [
            {"metric": m, "value": v, "step": st, "norm_mode": mode}
            for st in (0, 4)
            for m, v in (("lambda_lr", lam * (1 + st / 4)), ("limit", 3.8))
        ]
        hess.append({"metric": "lambda_lr", "value": -1.0, "step": 8, "norm_mode": mode})  # log axis: named
        probe(d, "hessian_top_eig", hess)
    # one failed run of E12b, to be listed, not dropped
    r.run(
        "E12b",
        {"model.norm": "none", "optim.lr": 1e-4, "optim.batch_size": 2},
        state="failed",
        step=1,
        reason="RuntimeError: out of memory",
    )
    return path
