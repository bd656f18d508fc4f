"""Where a run starts: the newest intact checkpoint, or step 0, and what the user is told about it.

A checkpoint whose checksum verifies can still be unusable (another architecture, a missing key): it is
set aside (quarantined) and the next older one is tried, with a warning naming it, so a damaged file never
stops a run for good. The model and optimizer are restored to their initial state after a failed load
(`load_state_dict` may have copied some tensors before raising).
"""

from __future__ import annotations

import copy
import sys
from dataclasses import dataclass, field
from typing import Any

import torch

from bnlab.store.checkpoint import list_checkpoints, load_verified
from bnlab.store.files import quarantine
from bnlab.store.rundir import RunDir


@dataclass
class Resumed:
    step: int = 0  # the step the run continues from (0: from the start)
    wall_s: float = 0.0
    state: dict[str, Any] | None = None  # the checkpoint's full state (None: none usable)
    warnings: list[str] = field(default_factory=list)


def resume_point(
    rd: RunDir, model: torch.nn.Module, optimizer: torch.optim.Optimizer, device, apply
) -> Resumed:
    """Load the newest usable checkpoint into `model`/`optimizer`; `apply(state)` restores the rest of
    the loop's state (meter, divergence reference, observers) and may raise on a malformed state."""
    fresh_model = copy.deepcopy(model.state_dict())
    fresh_optim = copy.deepcopy(optimizer.state_dict())
    out = Resumed()
    for path in reversed(list_checkpoints(rd.ckpt)):
        state = load_verified(path, device, out.warnings)
        if state is None:
            continue
        try:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            step, wall = int(state["step"]), float(state["wall_s"])
            apply(state)
        except (KeyError, RuntimeError, ValueError, TypeError, AttributeError, IndexError) as e:
            model.load_state_dict(fresh_model)
            optimizer.load_state_dict(fresh_optim)
            moved = quarantine(path)
            path.with_suffix(".sha256").unlink(missing_ok=True)
            out.warnings.append(
                f"checkpoint {path.name} does not fit this run ({type(e).__name__}); set aside as "
                f"{moved.name}, using an earlier one"
            )
            continue
        out.step, out.wall_s, out.state = step, wall, state
        break
    return out


def saved_metrics(state: dict[str, Any] | None) -> list[dict[str, Any]] | None:
    """The metric rows a checkpoint recorded (None for checkpoints written before they did)."""
    rows = (state or {}).get("metrics")
    return rows if isinstance(rows, list) else None


def say(text: str) -> None:
    """One line of progress on stderr (the result path stays the last stdout line)."""
    sys.stderr.write(f"bnlab: {text}\n")
    sys.stderr.flush()


def interrupt_reason(step: int, checkpoint_step: int) -> str:
    """What running the same command again will do, in one sentence."""
    if checkpoint_step <= 0:
        return f"interrupted at step {step}; no checkpoint yet: the rerun starts from step 0"
    return f"interrupted at step {step}; the rerun resumes from step {checkpoint_step} (the last checkpoint)"
