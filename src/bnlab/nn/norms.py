"""NORMS: every entry is `norm(num_features, *, dim=2, **kw) -> nn.Module` (dim 1: (B, C); 2: (B, C, H, W))."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from bnlab.registry import Registry

NORMS: Registry[Callable[..., nn.Module]] = Registry("norm")


@NORMS.register("batch")
def batch(num_features: int, *, dim: int = 2, **kw) -> nn.Module:
    """Batch normalization (Ioffe & Szegedy 2015)."""
    return (nn.BatchNorm2d if dim == 2 else nn.BatchNorm1d)(num_features, **kw)


@NORMS.register("none")
def none(num_features: int, *, dim: int = 2, **kw) -> nn.Module:
    """No normalization (identity)."""
    return nn.Identity()
