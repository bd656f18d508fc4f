"""bnlab: a laboratory for understanding normalization in deep networks.

Public entry points (imported lazily, so `import bnlab` is cheap and has no side effects):
    bnlab.build_model(**model_cfg) -> nn.Module
    bnlab.train(config, runs_root) -> Path of the run directory
    bnlab.load_runs(root) / bnlab.load_probes(root, probe) -> pandas.DataFrame
    bnlab.Monitor(model, optimizer, probes="cheap", schedule=10)  -> probes in your own training loop
    bnlab.diagnose(model, batches) -> init diagnostics beside bnlab's BN / no-BN references (.write_html)
    bnlab.rmt, bnlab.probes, bnlab.tasks, ...  (subpackages, imported on first use)
"""

from __future__ import annotations

from bnlab.registry import lazy_getattr

__version__ = "0.1.0"

_LAZY = {
    "build_model": ("bnlab.models", "build_model"),
    "train": ("bnlab.training", "train"),
    "load_runs": ("bnlab.store", "load_runs"),
    "load_probes": ("bnlab.store", "load_probes"),
    "Config": ("bnlab.config", "Config"),
    "Monitor": ("bnlab.monitor", "Monitor"),
    "diagnose": ("bnlab.report.diagnose", "diagnose"),
}
_SUBPACKAGES = {
    "rmt",
    "probes",
    "models",
    "nn",
    "data",
    "training",
    "store",
    "tasks",
    "analyses",
    "figures",
    "report",
    "sweeps",
    "monitor",
}

__getattr__ = lazy_getattr("bnlab", _LAZY, _SUBPACKAGES)
