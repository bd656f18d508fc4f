"""Training: `run(cfg, run_dir)` (one resumable run, with observers) and the public `train(config, runs_root)`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bnlab.config import Config, resolve, run_id
from bnlab.training.loop import run
from bnlab.training.names import check_names
from bnlab.training.observers import Observer

__all__ = ["Observer", "check_names", "run", "train"]


def train(
    config: str | Path | dict[str, Any] | Config | None = None,
    runs_root: str | Path = "runs",
    overrides: list[str] | None = None,
    *,
    progress: bool = True,
) -> Path:
    """Resolve a config (YAML path, dict or Config, plus `a.b=value` overrides), train it in
    `runs_root/<run_id>/` (resuming if it was interrupted; a finished run is not re-run), return that path.
    CIFAR data not found (data.root, $BNLAB_DATA, ~/.cache/bnlab) is downloaded first, as `bnlab reproduce`
    does; where that fails, a UserError says how to point data.root at a copy."""
    cfg = check_names(resolve(config, overrides))
    ensure_dataset(cfg)
    run_dir = Path(runs_root) / run_id(cfg)
    run(cfg, run_dir, progress=progress)
    return run_dir


def ensure_dataset(cfg: Config) -> None:
    """Find the run's CIFAR-10/100 copy, or download it once (md5-checked) into data.root / $BNLAB_DATA /
    ~/.cache/bnlab; other datasets are left to their loaders."""
    from bnlab.data import locate_or_download

    if cfg.data.name in ("cifar10", "cifar100"):
        locate_or_download(cfg.data.name, cfg.data.root)
