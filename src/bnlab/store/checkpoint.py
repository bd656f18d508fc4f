"""Checkpoints with a checksum: ckpt/step-<step>.pt plus ckpt/step-<step>.sha256.

Loaded with `torch.load(weights_only=True)` (a checkpoint from elsewhere cannot run code). The newest
checkpoint whose checksum matches is used; a corrupt or truncated one is skipped with a warning.
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import torch

from bnlab.store.files import atomic_write_bytes, atomic_write_text, fault_point
from bnlab.store.rundir import sha256_bytes

_NAME = re.compile(r"^step-(\d{9})\.pt$")


def save_checkpoint(ckpt_dir: str | Path, state: dict[str, Any], step: int, keep: int = 2) -> Path:
    ckpt_dir = Path(ckpt_dir)
    buf = io.BytesIO()
    torch.save(state, buf)
    data = buf.getvalue()
    path = ckpt_dir / f"step-{step:09d}.pt"
    fault_point("checkpoint_write")
    atomic_write_bytes(path, data)
    atomic_write_text(path.with_suffix(".sha256"), sha256_bytes(data) + "\n")
    for old in list_checkpoints(ckpt_dir)[:-keep] if keep > 0 else []:
        old.unlink(missing_ok=True)
        old.with_suffix(".sha256").unlink(missing_ok=True)
    return path


def list_checkpoints(ckpt_dir: str | Path) -> list[Path]:
    d = Path(ckpt_dir)
    if not d.is_dir():
        return []
    return sorted(p for p in d.iterdir() if _NAME.match(p.name))


def load_latest(
    ckpt_dir: str | Path, map_location: str | torch.device = "cpu"
) -> tuple[dict[str, Any] | None, list[str]]:
    """(state or None, warnings): the newest checkpoint whose checksum verifies."""
    warnings: list[str] = []
    for path in reversed(list_checkpoints(ckpt_dir)):
        state = load_verified(path, map_location, warnings)
        if state is not None:
            return state, warnings
    return None, warnings


def load_verified(path: Path, map_location: str | torch.device, warnings: list[str]) -> dict[str, Any] | None:
    try:
        data = path.read_bytes()
        expected = path.with_suffix(".sha256").read_text().strip()
    except OSError as e:
        warnings.append(f"checkpoint {path.name} unreadable ({e.strerror}); using an earlier one")
        return None
    if sha256_bytes(data) != expected:
        warnings.append(
            f"checkpoint {path.name} failed its checksum (corrupt or truncated); using an earlier one"
        )
        return None
    try:
        return torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means "not a usable checkpoint"
        warnings.append(
            f"checkpoint {path.name} could not be loaded ({type(e).__name__}); using an earlier one"
        )
        return None
