"""diagnose(model, batches): bnlab's init diagnostics on a user's model, beside bnlab's BN and no-BN
ResNet-20 references measured on the same minibatch, with plain findings; `bnlab diagnose` writes them as
one self-contained HTML page (bnlab.report.diagnose_page).

Measured on the first minibatch (BN in training mode: batch statistics), for each model:
    gradient tails     gradient_histogram: median excess kurtosis and Hill tail index over layers
    activations        activation_moments: log10 channel std of the first and last block (growth with depth)
    class bias         output_bias: share of the most predicted class at init
    kernel alignment   kernel_alignment (reduce=all): median Table 1 ratio Σ|d| / |Σd| over conv layers
    gradient rank      gradient_spectrum: median stable rank of the conv weight gradients
    first step         step_size_scan along the gradient: the loss ratio after one step at each lr
The references are `resnet_cifar` depth 20 with norm batch and none, built with bnlab's defaults.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from bnlab.errors import UserError

ETAS = (1e-3, 1e-2, 0.1, 0.3, 1.0, 3.0, 10.0)  # lrs of the first-step loss scan
METRICS = {  # key -> (label, how it is read, what is better)
    "kurtosis": "gradient excess kurtosis (median over layers)",
    "hill_index": "gradient tail index α (median over layers; smaller = heavier tail)",
    "act_std_first": "log10 activation std, first block",
    "act_std_last": "log10 activation std, last block",
    "top_class_share": "share of the most predicted class at init",
    "alignment_ratio": "kernel-gradient ratio Σ|d|/|Σd| (Table 1, median over convs)",
    "stable_rank": "stable rank of conv weight gradients (median)",
    "best_first_step_lr": "lr with the lowest loss after one gradient step",
    "first_step_ratio_at_1": "loss after one step at lr 1 / loss before",
}


@dataclass
class Diagnosis:
    numbers: dict[str, dict[str, float]]  # model label -> key -> value
    scans: dict[str, pd.DataFrame]  # model label -> step_size_scan rows (eta, ratio)
    depth: dict[str, pd.DataFrame]  # model label -> activation std by block
    findings: list[str]
    seconds: dict[str, float] = field(default_factory=dict)
    batch_shape: tuple[int, ...] = ()

    def write_html(self, path: Any, title: str = "bnlab diagnose") -> Any:
        from bnlab.report.diagnose_page import write_page

        return write_page(self, path, title)


def _median(t: pd.DataFrame, metric: str, **eq: str) -> float:
    if t.empty:
        return math.nan
    sel = t["metric"] == metric
    for k, v in eq.items():
        if k in t.columns:
            sel &= t[k] == v
    v = pd.to_numeric(t.loc[sel, "value"], errors="coerce").dropna()
    return float(v.median()) if len(v) else math.nan


def measure(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor
) -> tuple[dict[str, float], pd.DataFrame, pd.DataFrame]:
    from bnlab.probes import (
        ProbeContext,
        activation_moments,
        gradient_histogram,
        gradient_spectrum,
        kernel_alignment,
        output_bias,
        step_size_scan,
    )

    model.train()
    out: dict[str, float] = {}
    gh = gradient_histogram(model, x, y).table
    out["kurtosis"], out["hill_index"] = _median(gh, "kurtosis"), _median(gh, "hill_index")
    am = activation_moments(model, x, y).table
    depth = am[am["metric"] == "log10_std"][["layer", "value"]].reset_index(drop=True)
    out["act_std_first"] = float(depth["value"].iloc[0]) if len(depth) else math.nan
    out["act_std_last"] = float(depth["value"].iloc[-1]) if len(depth) else math.nan
    out["top_class_share"] = _median(output_bias(model, x, y).table, "top_class_share")
    has_conv = any(isinstance(m, nn.Conv2d) for m in model.modules())
    ka = kernel_alignment(model, x, y, reduce=("all",)).table if has_conv else pd.DataFrame()
    out["alignment_ratio"] = _median(ka, "ratio", reduce="all")
    gs = gradient_spectrum(model, x, y).table if has_conv else pd.DataFrame()
    out["stable_rank"] = _median(gs, "stable_rank", matrix="gradient")
    ss = step_size_scan(model, [(x, y)], ctx=ProbeContext(), etas=list(ETAS), directions=["gradient"]).table
    scan = ss[ss["metric"] == "ratio"][["eta", "value"]].astype(float).reset_index(drop=True)
    finite = scan[np.isfinite(scan["value"])]
    out["best_first_step_lr"] = (
        float(finite.loc[finite["value"].idxmin(), "eta"]) if len(finite) else math.nan
    )
    at1 = scan[np.isclose(scan["eta"], 1.0)]["value"]
    out["first_step_ratio_at_1"] = float(at1.iloc[0]) if len(at1) else math.nan
    return out, scan, depth


def references() -> dict[str, nn.Module]:
    from bnlab.models import build_model

    torch.manual_seed(0)
    return {
        "bnlab ResNet-20 with BN": build_model("resnet_cifar", depth=20, norm="batch"),
        "bnlab ResNet-20 without BN": build_model("resnet_cifar", depth=20, norm="none"),
    }


def findings(numbers: dict[str, dict[str, float]], label: str) -> list[str]:
    """Plain sentences about `label`'s numbers, each beside the references' value."""
    you, bn, nobn = (
        numbers[label],
        numbers.get("bnlab ResNet-20 with BN", {}),
        numbers.get("bnlab ResNet-20 without BN", {}),
    )

    def ref(key: str, fmt: str = "{:.3g}") -> str:
        parts = [
            f"{fmt.format(d[key])} {name}"
            for name, d in (("with BN", bn), ("without BN", nobn))
            if key in d and math.isfinite(d[key])
        ]
        return f" (bnlab's ResNet-20: {', '.join(parts)})" if parts else ""

    def closer_to_bn(key: str) -> bool | None:
        """Is `key` nearer (in log scale) to the BN reference than to the no-BN one? None if unknown."""
        v, b, n = you.get(key, math.nan), bn.get(key, math.nan), nobn.get(key, math.nan)
        if not all(math.isfinite(t) and t > 0 for t in (v, b, n)):
            return None
        return abs(math.log(v / b)) < abs(math.log(v / n))

    out = []
    share = you.get("top_class_share", math.nan)
    if math.isfinite(share):
        like = {True: "closer to the BN reference", False: "closer to the no-BN reference", None: ""}[
            closer_to_bn("top_class_share")
        ]
        out.append(
            f"One class takes {share:.0%} of the predictions at init{', ' + like if like else ''}{ref('top_class_share', '{:.0%}')}."
        )
    r = you.get("alignment_ratio", math.nan)
    if math.isfinite(r):
        near = closer_to_bn("alignment_ratio")
        kind = {
            True: "input-dependent, as with BN (the summands partly cancel)",
            False: "input-independent, as without BN (the summands align)",
            None: "measured",
        }[near]
        out.append(f"Kernel gradients are {kind}: Table 1 ratio {r:.3g}{ref('alignment_ratio')}.")
    a, b = you.get("act_std_first", math.nan), you.get("act_std_last", math.nan)
    if math.isfinite(a) and math.isfinite(b):
        grow = b - a
        word = "grow" if grow > 0.5 else ("shrink" if grow < -0.5 else "stay level")
        out.append(
            f"Activation scales {word} with depth: log10 std {a:.2f} at the first block, {b:.2f} at the last{ref('act_std_last', '{:.2f}')}."
        )
    k = you.get("kurtosis", math.nan)
    if math.isfinite(k):
        tail = "heavy-tailed" if k > 3 else "close to Gaussian"
        out.append(f"Weight gradients are {tail}: median excess kurtosis {k:.3g}{ref('kurtosis')}.")
    lr = you.get("best_first_step_lr", math.nan)
    if math.isfinite(lr):
        out.append(
            f"Along the gradient, one step of lr {lr:g} lowers this minibatch's loss most{ref('best_first_step_lr', '{:g}')}."
        )
    return out


def diagnose(
    model: nn.Module, batches: Any, *, references_too: bool = True, progress: bool = True
) -> Diagnosis:
    """Init diagnostics of `model` on the first (inputs, targets) of `batches` beside bnlab's references.
    The model is left as it was (probes restore .grad, buffers and modes)."""
    try:
        x, y = next(iter(batches))
    except (StopIteration, TypeError, ValueError) as e:
        raise UserError("diagnose needs batches: an iterable of (inputs, targets) minibatches") from e
    from bnlab.probes import unwrap_model

    label = f"your model ({type(unwrap_model(model)).__name__})"
    models = {label: model} | (references() if references_too else {})
    numbers, scans, depth, seconds = {}, {}, {}, {}
    for name, m in models.items():
        t0 = time.perf_counter()
        was = m.training
        try:
            numbers[name], scans[name], depth[name] = measure(m, x, y)
        except UserError:
            raise
        except Exception as e:
            raise UserError(
                f"measuring {name} on inputs of shape {tuple(x.shape)} failed: {type(e).__name__}: {e}"
            ) from e
        finally:
            m.train(was)
        seconds[name] = time.perf_counter() - t0
        if progress:
            print(f"bnlab diagnose: {name} measured in {seconds[name]:.1f} s", file=sys.stderr)
    return Diagnosis(numbers, scans, depth, findings(numbers, label), seconds, tuple(x.shape))
