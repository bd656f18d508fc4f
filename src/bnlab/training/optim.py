"""SGD with momentum/nesterov and weight decay; norm and bias parameters can be excluded from weight
decay, selected by module type (never by parameter name)."""

from __future__ import annotations

import torch
from torch import nn

from bnlab.config import OptimConfig


def _no_decay_params(model: nn.Module) -> set[int]:
    from bnlab.nn.norms import NORM_TYPES

    ids: set[int] = set()
    for m in model.modules():
        if isinstance(m, NORM_TYPES):
            ids.update(id(p) for p in m.parameters(recurse=False))
        elif isinstance(m, nn.Conv1d | nn.Conv2d | nn.Conv3d | nn.Linear) and m.bias is not None:
            ids.add(id(m.bias))
    return ids


def make_optimizer(model: nn.Module, ocfg: OptimConfig) -> torch.optim.SGD:
    params = [p for p in model.parameters() if p.requires_grad]
    if ocfg.exclude_norm_and_bias_from_wd and ocfg.weight_decay > 0:
        skip = _no_decay_params(model)
        groups = [
            {"params": [p for p in params if id(p) not in skip], "weight_decay": ocfg.weight_decay},
            {"params": [p for p in params if id(p) in skip], "weight_decay": 0.0},
        ]
    else:
        groups = [{"params": params, "weight_decay": ocfg.weight_decay}]
    on_cuda = any(p.is_cuda for p in params)
    return torch.optim.SGD(
        groups,
        lr=ocfg.lr,
        momentum=ocfg.momentum,
        nesterov=ocfg.nesterov and ocfg.momentum > 0,
        foreach=True if not on_cuda else None,
        fused=True if on_cuda else None,
    )
