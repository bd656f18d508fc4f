"""MODELS: resnet_cifar, vgg_cifar, mlp: each a model class built from its config section, a ModelConfig.
`build_model(**model_cfg)` accepts every ModelConfig field.

Each model provides `paper_layers()` ({module name: layer number} for its weighted layers) and
`block_outputs()` (module names whose outputs are "the activations" probes read); the ResNet also
`block_for_paper_layer(L)`. The paper-layer mapping for other depths is
`bnlab.models.layers.paper_layer_to_local` / `local_to_paper`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from torch import nn

from bnlab.registry import Registry

if TYPE_CHECKING:
    from bnlab.config import ModelConfig

MODELS: Registry[Callable[[ModelConfig], nn.Module]] = Registry("model", lister="bnlab ls models")


def _register() -> None:
    from bnlab.models.cnn import SmallCNN
    from bnlab.models.mlp import MLP
    from bnlab.models.resnet import ResNetCifar
    from bnlab.models.vgg import VGGCifar

    MODELS.register("resnet_cifar")(ResNetCifar)
    MODELS.register("vgg_cifar")(VGGCifar)
    MODELS.register("mlp")(MLP)
    MODELS.register("cnn_cifar")(SmallCNN)


_register()


def build_model(name: str = "resnet_cifar", **cfg: Any) -> nn.Module:
    """Build and initialize a model from ModelConfig fields given as keywords
    (`build_model(**ModelConfig(...).model_dump())` works; missing fields take their defaults).

    The config is validated as a ModelConfig (bad values raise UserError); `init` (an InitConfig or
    its dict) is applied by `bnlab.nn.init.init_model`. `num_classes` None means 10. The balanced
    output bias needs data and is left to the caller (`bnlab.nn.init.balance_output_bias`)."""
    from pydantic import ValidationError

    from bnlab.config import ModelConfig, _one_sentence
    from bnlab.errors import UserError
    from bnlab.nn.init import init_model

    try:
        mc = ModelConfig(name=name, **cfg)
    except ValidationError as e:
        raise UserError(_one_sentence(e).replace("config value for ", "config value for model.")) from None
    model = MODELS.get(name)(mc)
    init_model(model, mc.init)
    return model
