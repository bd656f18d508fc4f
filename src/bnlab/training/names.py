"""check_names(cfg): every registry name a config refers to exists (model, norm, inits, dataset, probes).

These checks live here, not in `bnlab.config`, because config imports nothing above it; the registries are
the single source of the choices (a registered init is listed by `bnlab ls inits` and accepted here).
Called by `bnlab.tasks.check` and `bnlab.training.train`, before any run directory exists.
"""

from __future__ import annotations

from bnlab.config import Config
from bnlab.data import DATASETS
from bnlab.errors import UserError
from bnlab.models import MODELS
from bnlab.nn.init import INITS
from bnlab.nn.norms import NORMS
from bnlab.registry import Registry


def check_names(cfg: Config) -> Config:
    """`cfg` when every name is registered; else a one-sentence UserError naming the key and the choices."""
    _known(MODELS, cfg.model.name, "model.name")
    _known(NORMS, cfg.model.norm, "model.norm")
    _known(INITS, cfg.model.init.conv, "model.init.conv")
    _known(INITS, cfg.model.init.fc, "model.init.fc")
    _known(DATASETS, cfg.data.name, "data.name")
    if cfg.probes:
        from bnlab.probes.guard import check_options
        from bnlab.probes.registry import PROBES

        for i, p in enumerate(cfg.probes):
            _known(PROBES, p.name, f"probes.{i}.name")
            check_options(PROBES.get(p.name), p.name, p.options)
    return cfg


def _known(registry: Registry, name: str, key: str) -> None:
    if name not in registry:
        raise UserError(f"invalid config value for {key}: {registry.unknown(name)}")
