"""MODELS: resnet_cifar, vgg_cifar, mlp. `build_model(**model_cfg)` accepts every ModelConfig field."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from bnlab.registry import Registry

MODELS: Registry[Callable[..., nn.Module]] = Registry("model")
MODELS.register("resnet_cifar")(lambda **kw: None)  # placeholder until models land
MODELS.register("vgg_cifar")(lambda **kw: None)
MODELS.register("mlp")(lambda **kw: None)


def build_model(name: str = "resnet_cifar", **cfg) -> nn.Module:
    return MODELS.get(name)(**cfg)
