"""Which normalization statistics a measurement uses, one vocabulary for every probe (DESIGN.md "Probes"):

  batch    this minibatch's statistics, gradients flow through them (norm layers in training mode);
  frozen   this minibatch's statistics treated as constants (eval mode, each BN fed its batch statistics);
  running  the running statistics (eval mode). At init they are (0, 1): asking for them while a BN has
           `num_batches_tracked == 0` warns.

Old spellings stay accepted with a DeprecationWarning: `coupled` -> `batch`, `eval` -> `running`.
A result records `norm_stats` = the mode, or "none" when the model has no normalization layer at all.
Also here: `unwrap_model`, the one place that looks through torch.compile and DDP/DataParallel wrappers.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from bnlab.errors import UserError

NormStats = Literal["batch", "frozen", "running"]
NORM_STATS: tuple[str, ...] = ("batch", "frozen", "running")
ALIASES = {"coupled": "batch", "eval": "running"}

# Norm layers recognised by type (DESIGN: find layers by type, never by name).
NORM_TYPES: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._NormBase,
    nn.GroupNorm,
    nn.LayerNorm,
    nn.LocalResponseNorm,
)


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module a torch.compile (`_orig_mod`) or DDP/DataParallel (`.module`) wrapper holds, any nesting."""
    from torch.nn.parallel import DataParallel, DistributedDataParallel

    while True:
        inner = getattr(model, "_orig_mod", None)
        if isinstance(inner, nn.Module):
            model = inner
        elif isinstance(model, (DataParallel, DistributedDataParallel)):
            model = model.module
        else:
            return model


def resolve_norm_stats(value: str, what: str = "norm_stats") -> str:
    """`value` in the current vocabulary (batch | frozen | running); old spellings warn, others raise."""
    if value in ALIASES:
        new = ALIASES[value]
        warnings.warn(
            f"{what}={value!r} is deprecated; use {new!r} (one vocabulary: batch, frozen, running)",
            DeprecationWarning,
            stacklevel=3,
        )
        return new
    if value not in NORM_STATS:
        raise UserError(f"{what} must be one of {', '.join(NORM_STATS)}, not {value!r}")
    return value


def has_norm(model: nn.Module) -> bool:
    return any(isinstance(m, NORM_TYPES) for m in model.modules())


def norm_stats_label(model: nn.Module, norm_stats: str) -> str:
    """What a result records: the mode, or "none" for a model without any normalization layer."""
    return norm_stats if has_norm(model) else "none"


def _frozen_types() -> tuple[type[nn.Module], ...]:
    from bnlab.nn import norms

    return (norms.FrozenBatchNorm1d, norms.FrozenBatchNorm2d)


def couples_examples(model: nn.Module, norm_stats: str) -> bool:
    """Whether one example's output depends on the others' (batch statistics of a BN)."""
    frozen_bn = _frozen_types()
    return norm_stats == "batch" and any(
        isinstance(m, _BatchNorm) and not isinstance(m, frozen_bn) for m in model.modules()
    )


def _warn_untracked(model: nn.Module) -> None:
    frozen_bn = _frozen_types()  # frozen batch norm uses its running statistics in every mode
    untracked = [
        n
        for n, m in model.named_modules()
        if isinstance(m, _BatchNorm)
        and not isinstance(m, frozen_bn)
        and m.num_batches_tracked is not None
        and int(m.num_batches_tracked) == 0
    ]
    if untracked:
        warnings.warn(
            f"running statistics requested but {untracked[0]} (and {len(untracked) - 1} more) never saw "
            "a batch (num_batches_tracked == 0): at init running statistics are (0, 1) and eval-mode BN "
            "is the identity",
            stacklevel=4,
        )


def _set_flags(model: nn.Module, norm_stats: str) -> None:
    if norm_stats == "batch":
        model.train()
        for m in model.modules():
            if isinstance(m, nn.modules.dropout._DropoutNd):
                m.eval()
    else:
        model.eval()


@contextmanager
def frozen_batch_stats(model: nn.Module) -> Iterator[None]:
    """Pre-hooks writing the statistics each BN normalizes with in training mode, computed on the batch it
    sees, into its running buffers, so eval-mode BN uses them as constants. Call inside `guard` (which
    restores the buffers), with the model in eval mode.

    Plain BN: batch mean and biased variance. bnlab's batch renorm: the effective (μ_B − dσ_B/r,
    (σ_B/r)² − eps) with its r, d. bnlab's frozen batch norm: left as is (it uses running statistics
    anyway). Ghost batch norm (per-chunk statistics) is not representable, nor is a BN without running
    buffers: error."""
    from bnlab.nn import norms  # bnlab's own BN subclasses, by type

    handles = []
    for name, m in model.named_modules():
        if not isinstance(m, _BatchNorm) or isinstance(m, _frozen_types()):
            continue
        if isinstance(m, (norms.GhostBatchNorm1d, norms.GhostBatchNorm2d)):
            raise UserError(
                f"{name} is a ghost batch norm (per-chunk statistics); use norm_stats 'batch' or 'running'"
            )
        if m.running_mean is None or m.running_var is None:
            raise UserError(
                f"{name} keeps no running statistics (track_running_stats=False); use norm_stats 'batch'"
            )
        renorm = isinstance(m, (norms.BatchRenorm1d, norms.BatchRenorm2d))

        def pre(mod: _BatchNorm, args: tuple, renorm: bool = renorm) -> None:
            x = args[0].detach()
            dims = [d for d in range(x.dim()) if d != 1]
            mean, var = x.mean(dims), x.var(dims, correction=0)
            with torch.no_grad():
                if renorm:
                    r_max, d_max = mod.clip_limits(int(mod.num_batches_tracked))  # type: ignore[operator,arg-type]
                    sigma_b = torch.sqrt(var + mod.eps)
                    sigma = torch.sqrt(mod.running_var + mod.eps)  # type: ignore[operator]
                    r = (sigma_b / sigma).clamp(1.0 / r_max, r_max)
                    d = ((mean - mod.running_mean) / sigma).clamp(-d_max, d_max)
                    mean, var = mean - d * sigma_b / r, (sigma_b / r) ** 2 - mod.eps
                mod.running_mean.copy_(mean)  # type: ignore[union-attr]
                mod.running_var.copy_(var)  # type: ignore[union-attr]

        handles.append(m.register_forward_pre_hook(pre))
    try:
        yield
    finally:
        for h in handles:
            h.remove()


@contextmanager
def norm_stats_mode(model: nn.Module, norm_stats: str, *, what: str = "norm_stats") -> Iterator[str]:
    """Put the model in statistics mode `norm_stats` for the duration (call inside `guard`, which restores
    training flags and buffers); yields what the result records (the resolved mode, or "none").

    batch: training mode, dropout off. frozen: eval mode plus `frozen_batch_stats`. running: eval mode
    (warns when a BN never saw a batch)."""
    mode = resolve_norm_stats(norm_stats, what)
    _set_flags(model, mode)
    if mode == "running":
        _warn_untracked(model)
    label = norm_stats_label(model, mode)
    if mode == "frozen":
        with frozen_batch_stats(model):
            yield label
    else:
        yield label
