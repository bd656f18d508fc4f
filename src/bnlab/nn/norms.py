"""NORMS: every entry is `norm(num_features, *, dim=2, **kw) -> nn.Module` (dim 1: (B, C); 2: (B, C, H, W)).

One calling contract for every normalization, so that models swap them by name (after timm's
`create_norm`). Options come from `model.norm_kw`; an option a norm does not take is a UserError.

| name          | statistics                                   | module                                  |
|---------------|----------------------------------------------|-----------------------------------------|
| batch         | over (B, H, W) per channel; running stats    | nn.BatchNorm1d / nn.BatchNorm2d         |
| none          | -                                            | nn.Identity                             |
| group         | over (C/G, H, W) per example and group       | nn.GroupNorm (kw channels_per_group=8)  |
| layer         | over (C, H, W) per example; affine per chan. | nn.GroupNorm with one group             |
| instance      | over (H, W) per example and channel          | nn.InstanceNorm2d(affine=True)          |
| batch_renorm  | batch, corrected by r, d (Ioffe 2017)        | BatchRenorm1d / BatchRenorm2d           |
| ghost_batch   | batch, per virtual sub-batch (Hoffer 2017)   | GhostBatchNorm1d / GhostBatchNorm2d     |
| frozen_batch  | running statistics only, also in train mode  | FrozenBatchNorm1d / FrozenBatchNorm2d   |

Every norm that normalizes with batch statistics or keeps running statistics is an instance of
`torch.nn.modules.batchnorm._BatchNorm`, so code that finds norms by type (probes, BN
recalibration, weight-decay exclusion) treats them alike. `NORM_TYPES` lists every norm class.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.instancenorm import _InstanceNorm

from bnlab.errors import UserError
from bnlab.registry import Registry

NORMS: Registry[Callable[..., nn.Module]] = Registry("norm", lister="bnlab ls norms")


def _check_dim(dim: int) -> None:
    if dim not in (1, 2):
        raise UserError(f"norm dim must be 1 (B, C features) or 2 (B, C, H, W images), got {dim}")


def _construct(name: str, cls: Callable[..., nn.Module], *args: Any, **kw: Any) -> nn.Module:
    """Call a norm class; an unknown option becomes a UserError naming the norm."""
    try:
        return cls(*args, **kw)
    except TypeError as e:
        raise UserError(
            f"norm {name!r} does not accept the options {sorted(kw)} ({e}); fix model.norm_kw"
        ) from None


def _reduce_dims(x: Tensor) -> list[int]:
    """Dimensions a per-channel batch statistic reduces over: all but dim 1 (channels)."""
    return [0] + list(range(2, x.dim()))


def _shape(x: Tensor) -> list[int]:
    """Broadcast shape of a per-channel vector against x."""
    return [1, x.shape[1]] + [1] * (x.dim() - 2)


def _update_running(bn: _BatchNorm, mean: Tensor, var_unbiased: Tensor) -> None:
    """Exponential (or, with momentum None, cumulative) running average, as nn.BatchNorm does."""
    assert bn.num_batches_tracked is not None and bn.running_mean is not None and bn.running_var is not None
    bn.num_batches_tracked.add_(1)
    factor = 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum
    with torch.no_grad():
        bn.running_mean.lerp_(mean.to(bn.running_mean.dtype), factor)
        bn.running_var.lerp_(var_unbiased.to(bn.running_var.dtype), factor)


# --------------------------------------------------------------------------------------------- batch renorm


class _BatchRenormMixin:
    """Batch Renormalization (Ioffe 2017).

    Training: y = gamma * ((x - mu_B) / sigma_B * r + d) + beta with
    r = clip(sigma_B / sigma, 1/r_max, r_max), d = clip((mu_B - mu) / sigma, -d_max, d_max), both
    treated as constants in the backward pass; (mu, sigma^2) are the running statistics *before*
    this batch's update, sigma_B = sqrt(var_B + eps), sigma = sqrt(running_var + eps).
    Ioffe's warm-up: r_max = 1 and d_max = 0 (plain batch norm) for the first `warmup_start` steps,
    then linear ramps reaching `r_max` at step `r_max_at` and `d_max` at step `d_max_at`
    (his ImageNet values: 5k, 40k, 25k; the step is `num_batches_tracked`, saved with the model).
    Eval mode uses the running statistics, exactly like batch norm.
    """

    r_max: float
    d_max: float
    warmup_start: int
    r_max_at: int
    d_max_at: int

    def __init__(
        self,
        num_features: int,
        *,
        r_max: float = 3.0,
        d_max: float = 5.0,
        warmup_start: int = 5000,
        r_max_at: int = 40000,
        d_max_at: int = 25000,
        **kw: Any,
    ) -> None:
        super().__init__(num_features, **kw)  # the BatchNorm1d / BatchNorm2d this mixin is combined with
        if r_max < 1 or d_max < 0 or warmup_start < 0:
            raise UserError("batch_renorm needs r_max >= 1, d_max >= 0 and warmup_start >= 0")
        if r_max_at <= warmup_start or d_max_at <= warmup_start:
            raise UserError("batch_renorm needs r_max_at and d_max_at after warmup_start")
        if not getattr(self, "track_running_stats", True):
            raise UserError("batch_renorm needs running statistics; drop track_running_stats=False")
        self.r_max, self.d_max = float(r_max), float(d_max)
        self.warmup_start, self.r_max_at, self.d_max_at = int(warmup_start), int(r_max_at), int(d_max_at)

    def clip_limits(self, step: int) -> tuple[float, float]:
        """(r_max, d_max) in force at optimizer step `step` (0-based count of training batches seen)."""

        def ramp(end: int) -> float:
            return min(max((step - self.warmup_start) / (end - self.warmup_start), 0.0), 1.0)

        return 1.0 + (self.r_max - 1.0) * ramp(self.r_max_at), self.d_max * ramp(self.d_max_at)

    def forward(self, x: Tensor) -> Tensor:
        bn: _BatchNorm = self  # type: ignore[assignment]
        bn._check_input_dim(x)
        if not bn.training:
            return _BatchNorm.forward(bn, x)
        assert (
            bn.num_batches_tracked is not None and bn.running_mean is not None and bn.running_var is not None
        )
        r_max, d_max = self.clip_limits(int(bn.num_batches_tracked))
        dims = _reduce_dims(x)
        n = x.numel() // x.shape[1]
        mean = x.mean(dims)
        var = x.var(dims, unbiased=False)
        sigma_b = torch.sqrt(var + bn.eps)
        with torch.no_grad():
            sigma = torch.sqrt(bn.running_var + bn.eps)
            r = (sigma_b / sigma).clamp(1.0 / r_max, r_max)
            d = ((mean - bn.running_mean) / sigma).clamp(-d_max, d_max)
        shape = _shape(x)
        y = (x - mean.view(shape)) / sigma_b.view(shape) * r.view(shape) + d.view(shape)
        if bn.affine:
            y = y * bn.weight.view(shape) + bn.bias.view(shape)
        _update_running(bn, mean.detach(), var.detach() * n / max(n - 1, 1))
        return y


class BatchRenorm1d(_BatchRenormMixin, nn.BatchNorm1d):
    __doc__ = _BatchRenormMixin.__doc__


class BatchRenorm2d(_BatchRenormMixin, nn.BatchNorm2d):
    __doc__ = _BatchRenormMixin.__doc__


# ---------------------------------------------------------------------------------------------- ghost batch


class _GhostBatchMixin:
    """Ghost batch normalization (Hoffer et al. 2017): batch statistics over virtual sub-batches.

    Training: the batch is split, in order, into chunks of `virtual_batch` examples (the last one may
    be smaller) and each chunk is normalized with its own mean and biased variance. The running
    statistics are updated once per forward (one optimizer step, as for batch norm) with the average
    over chunks of the chunk means and unbiased chunk variances. With `virtual_batch` >= the batch
    this is batch norm. A last chunk of a single (B, C) example joins the previous chunk. Eval mode
    uses the running statistics.
    """

    virtual_batch: int

    def __init__(self, num_features: int, *, virtual_batch: int = 32, **kw: Any) -> None:
        super().__init__(num_features, **kw)  # the BatchNorm1d / BatchNorm2d this mixin is combined with
        self.virtual_batch = _check_virtual(virtual_batch)

    def forward(self, x: Tensor) -> Tensor:
        bn: _BatchNorm = self  # type: ignore[assignment]
        bn._check_input_dim(x)
        if not bn.training:
            return _BatchNorm.forward(bn, x)
        sizes = [min(self.virtual_batch, x.shape[0] - a) for a in range(0, x.shape[0], self.virtual_batch)]
        if len(sizes) > 1 and sizes[-1] * x[0, 0].numel() == 1:  # one value per channel has no variance:
            sizes[-2:] = [sizes[-2] + sizes[-1]]  # the last example joins the previous virtual batch
        chunks = torch.split(x, sizes, dim=0)
        outs, means, vars_ = [], [], []
        dims = _reduce_dims(x)
        for c in chunks:
            outs.append(F.batch_norm(c, None, None, bn.weight, bn.bias, True, 0.0, bn.eps))
            with torch.no_grad():
                means.append(c.mean(dims))
                vars_.append(c.var(dims, unbiased=c.numel() // c.shape[1] > 1))
        if bn.track_running_stats:
            _update_running(bn, torch.stack(means).mean(0), torch.stack(vars_).mean(0))
        return torch.cat(outs, 0)


def _check_virtual(virtual_batch: int) -> int:
    if not isinstance(virtual_batch, int) or virtual_batch < 1:
        raise UserError(f"ghost_batch needs virtual_batch a positive integer, got {virtual_batch!r}")
    return virtual_batch


class GhostBatchNorm1d(_GhostBatchMixin, nn.BatchNorm1d):
    __doc__ = _GhostBatchMixin.__doc__


class GhostBatchNorm2d(_GhostBatchMixin, nn.BatchNorm2d):
    __doc__ = _GhostBatchMixin.__doc__


# --------------------------------------------------------------------------------------------- frozen batch


class _FrozenBatchMixin:
    """Batch norm that always normalizes with its running statistics, in train mode too, and never
    updates them (they stay at their loaded or initial (0, 1) values). gamma and beta remain
    trainable parameters (unlike torchvision's FrozenBatchNorm2d, which also freezes them)."""

    def forward(self, x: Tensor) -> Tensor:
        bn: _BatchNorm = self  # type: ignore[assignment]
        bn._check_input_dim(x)
        return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)


class FrozenBatchNorm1d(_FrozenBatchMixin, nn.BatchNorm1d):
    __doc__ = _FrozenBatchMixin.__doc__


class FrozenBatchNorm2d(_FrozenBatchMixin, nn.BatchNorm2d):
    __doc__ = _FrozenBatchMixin.__doc__


NORM_TYPES: tuple[type[nn.Module], ...] = (
    _BatchNorm,
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    BatchRenorm1d,
    BatchRenorm2d,
    GhostBatchNorm1d,
    GhostBatchNorm2d,
    FrozenBatchNorm1d,
    FrozenBatchNorm2d,
    nn.GroupNorm,
    _InstanceNorm,
    nn.InstanceNorm1d,
    nn.InstanceNorm2d,
    nn.LayerNorm,
)
"""Every norm module class (base classes included), for `isinstance(m, NORM_TYPES)`."""


# ------------------------------------------------------------------------------------------------ registry


@NORMS.register("batch")
def batch(num_features: int, *, dim: int = 2, **kw: Any) -> nn.Module:
    """Batch normalization (Ioffe & Szegedy 2015)."""
    _check_dim(dim)
    return _construct("batch", nn.BatchNorm2d if dim == 2 else nn.BatchNorm1d, num_features, **kw)


@NORMS.register("none")
def none(num_features: int, *, dim: int = 2, **kw: Any) -> nn.Module:
    """No normalization (identity)."""
    return nn.Identity()


@NORMS.register("group")
def group(num_features: int, *, dim: int = 2, channels_per_group: int = 8, **kw: Any) -> nn.Module:
    """Group normalization (Wu & He 2018), parameterized by channels per group (kw channels_per_group, 8)."""
    _check_dim(dim)
    if not isinstance(channels_per_group, int) or channels_per_group < 1:
        raise UserError(f"group norm needs channels_per_group a positive integer, got {channels_per_group!r}")
    if num_features % channels_per_group != 0:
        raise UserError(
            f"group norm: {num_features} channels do not split into groups of {channels_per_group}; "
            "choose a channels_per_group that divides every layer's width"
        )
    groups = num_features // channels_per_group
    if groups == num_features:
        raise UserError("group norm with one channel per group is instance norm; use norm 'instance'")
    return _construct("group", nn.GroupNorm, groups, num_features, **kw)


@NORMS.register("layer")
def layer(num_features: int, *, dim: int = 2, **kw: Any) -> nn.Module:
    """Layer normalization as GroupNorm with one group: statistics over (C, H, W), per-channel affine."""
    _check_dim(dim)
    return _construct("layer", nn.GroupNorm, 1, num_features, **kw)


@NORMS.register("instance")
def instance(num_features: int, *, dim: int = 2, **kw: Any) -> nn.Module:
    """Instance normalization (Ulyanov et al. 2016): statistics over (H, W), per-channel affine."""
    _check_dim(dim)
    if dim == 1:
        raise UserError(
            "instance norm on (B, C) features normalizes single numbers to zero; "
            "use another norm or a placement with 2-d norms only"
        )
    kw.setdefault("affine", True)
    return _construct("instance", nn.InstanceNorm2d, num_features, **kw)


@NORMS.register("batch_renorm")
def batch_renorm(num_features: int, *, dim: int = 2, **kw: Any) -> nn.Module:
    """Batch renormalization (Ioffe 2017) with its r_max/d_max warm-up (kw r_max, d_max, warmup_start, r_max_at, d_max_at)."""
    _check_dim(dim)
    return _construct("batch_renorm", BatchRenorm2d if dim == 2 else BatchRenorm1d, num_features, **kw)


@NORMS.register("ghost_batch")
def ghost_batch(num_features: int, *, dim: int = 2, **kw: Any) -> nn.Module:
    """Ghost batch normalization (Hoffer et al. 2017): statistics per virtual batch (kw virtual_batch, 32)."""
    _check_dim(dim)
    return _construct("ghost_batch", GhostBatchNorm2d if dim == 2 else GhostBatchNorm1d, num_features, **kw)


@NORMS.register("frozen_batch")
def frozen_batch(num_features: int, *, dim: int = 2, **kw: Any) -> nn.Module:
    """Batch norm with running statistics only, in train mode too (never updated)."""
    _check_dim(dim)
    return _construct(
        "frozen_batch", FrozenBatchNorm2d if dim == 2 else FrozenBatchNorm1d, num_features, **kw
    )


def is_norm(module: nn.Module) -> bool:
    """True for every normalization layer bnlab knows (by type)."""
    return isinstance(module, NORM_TYPES)
