"""Seeds for every random choice the data layer makes, derived from (seed, purpose, ...).

Each purpose (validation split, subset, epoch order, augmentation of one step, ...) gets its own
stream, so changing one setting (say the number of test images) never shifts another's draws, and
a resumed run can recompute any step's randomness from (seed, step) alone.
"""

from __future__ import annotations

import hashlib

import torch


def derive_seed(*parts: object) -> int:
    """A 63-bit seed that depends only on `parts` (stable across processes and platforms)."""
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def cpu_generator(*parts: object) -> torch.Generator:
    """A CPU torch.Generator seeded with derive_seed(*parts)."""
    return torch.Generator().manual_seed(derive_seed(*parts))
