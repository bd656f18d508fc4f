"""What the hot path does on CUDA that it does not on CPU: how often the host reads the losses, and
torch.compile (train.compile).

Host reads: on CUDA a read of a loss (`.cpu()`, `float()`) waits for every queued kernel, so by default
the losses stay on the device and are read every CUDA_SYNC_EVERY steps; the first diverging step is
still found exactly from the buffered losses (bnlab.training.meter). On CPU a read costs nothing, so the
default reads every step. An observer that must see each loss before its update (the diverging-step
snapshot) makes the run read every step on any device.

Compile: only on CUDA (an inductor compile of a ResNet-8 takes ~100 s on 2 CPU cores, more than the CPU
profiles' runs); `true` is torch.compile's "default" mode; "reduce-overhead" replays the step's kernels
as CUDA graphs (one launch instead of ~3 per layer), which is what a small net at batch 128 needs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

CUDA_SYNC_EVERY = 50  # steps between host reads on CUDA: the GPU never waits for the host in between


def host_read_every(sync_every: int | None, device: torch.device, observers: Sequence[Any] = ()) -> int:
    """Steps between host reads of the buffered losses (train.sync_every; None: the device's default)."""
    if any(getattr(o, "needs_sync", False) for o in observers):
        return 1
    if sync_every is not None:
        return sync_every
    return CUDA_SYNC_EVERY if device.type == "cuda" else 1


def compile_mode(value: bool | str) -> str | None:
    """train.compile as a torch.compile mode, or None for no compile."""
    if value is False:
        return None
    return "default" if value is True else str(value)


def uses_cuda_graphs(mode: str | None) -> bool:
    return mode in ("reduce-overhead", "max-autotune")


def compiled_forward(model: nn.Module, value: bool | str, device: torch.device) -> nn.Module:
    """The module the loop calls for its forward pass: `model` itself unless train.compile asks for a
    compile on CUDA. The wrapper shares `model`'s parameters, so state dicts stay the plain module's."""
    mode = compile_mode(value)
    if mode is None or device.type != "cuda":
        return model
    return torch.compile(model, mode=mode)  # type: ignore[return-value]  # an OptimizedModule


def mark_step(value: bool | str, device: torch.device) -> None:
    """Before each training step with CUDA graphs: tells torch a new step begins, so the previous step's
    graph outputs (already consumed) may be overwritten."""
    if device.type == "cuda" and uses_cuda_graphs(compile_mode(value)):
        torch.compiler.cudagraph_mark_step_begin()
