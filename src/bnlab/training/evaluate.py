"""Evaluation (eval-mode pass, no gradients) and BN running-statistics recalibration."""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


@torch.no_grad()
def evaluate(
    model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]
) -> tuple[float, float] | None:
    """(mean cross-entropy, accuracy) over the batches in eval mode; None when there are none.

    Sums stay on the device and are read once at the end (no per-batch host sync)."""
    was_training = model.training
    model.eval()
    loss_sum = correct = None
    n = 0
    for x, y in batches:
        out = model(x).float()
        ls = F.cross_entropy(out, y, reduction="sum")
        c = (out.argmax(1) == y).sum()
        loss_sum = ls if loss_sum is None else loss_sum + ls
        correct = c if correct is None else correct + c
        n += y.numel()
    model.train(was_training)
    if n == 0 or loss_sum is None or correct is None:
        return None
    return float(loss_sum) / n, float(correct) / n


@torch.no_grad()
def recalibrate_bn(model: nn.Module, dd, batch_size: int, seed: int, batches: int = 20) -> None:
    """Re-estimate BN running statistics as a plain average over `batches` unaugmented train batches."""
    from bnlab.nn.norms import FrozenBatchNorm1d, FrozenBatchNorm2d

    # frozen_batch never learns statistics: resetting them would lose them for good
    bns = [
        m
        for m in model.modules()
        if isinstance(m, _BatchNorm)
        and m.track_running_stats
        and not isinstance(m, FrozenBatchNorm1d | FrozenBatchNorm2d)
    ]
    if not bns:
        return
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average
    was_training = model.training
    model.train()
    for x, _ in dd.probe_batches(batches, batch_size, seed=seed + 31337):
        model(x)
    for m, mom in zip(bns, saved):
        m.momentum = mom
    model.train(was_training)


def evaluate_splits(model: nn.Module, dd, tcfg, batch_size: int, final: bool) -> dict[str, dict[str, float]]:
    """{split: {"loss", "acc"}} for train_eval (a fixed subset), val and test (a fixed subset except at the
    end of training), after an optional BN recalibration; {} when `tcfg.evaluate` is off."""
    if tcfg.recalibrate_bn:
        recalibrate_bn(model, dd, batch_size, seed=tcfg.seed)
    out: dict[str, dict[str, float]] = {}
    for split in ("train_eval", "val", "test") if tcfg.evaluate else ():
        n = tcfg.eval_train_subset if split == "train_eval" else None
        if split == "test" and not final:
            n = tcfg.eval_test_subset
        res = evaluate(model, dd.eval_batches(split, 500, n=n, seed=tcfg.seed))
        if res is not None:
            out[split] = {"loss": res[0], "acc": res[1]}
    return out
