"""A model factory for `bnlab diagnose`: any function that returns an nn.Module.

bnlab diagnose examples/model_factory.py:small_bn_convnet --data-root /work/data
bnlab diagnose examples.model_factory:plain_convnet --npz my_images.npz
"""

from __future__ import annotations

import torch
from torch import nn


def _convnet(norm: bool) -> nn.Module:
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    c_in = 3
    for c in (32, 32, 64, 64):
        layers += [nn.Conv2d(c_in, c, 3, padding=1, bias=not norm)]
        layers += [nn.BatchNorm2d(c)] if norm else []
        layers += [nn.ReLU()]
        c_in = c
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, 10))


def small_bn_convnet() -> nn.Module:
    """Four 3×3 convolutions with BatchNorm, global pooling, a linear classifier."""
    return _convnet(norm=True)


def plain_convnet() -> nn.Module:
    """The same without normalization."""
    return _convnet(norm=False)
