"""What a Monitor promises to leave as it found it: the global RNG states (torch CPU and CUDA, numpy,
Python), every module's train/eval flag, every buffer (BN running statistics) and every `.grad`.

Probes already leave parameters, `.grad` and buffers bit-identical (DESIGN.md); `untouched` restores them
anyway, so a probe that breaks its promise cannot change the user's training. Its cost is one copy of the
gradients and buffers per measured step (never on a step that measures nothing).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn


@contextmanager
def global_rng_kept() -> Iterator[None]:
    """Restore torch's CPU and (initialised) CUDA generators, numpy's and Python's on exit."""
    cpu = torch.get_rng_state()
    cuda = (
        torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    )
    np_state = np.random.get_state()
    py_state = random.getstate()
    try:
        yield
    finally:
        torch.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)
        np.random.set_state(np_state)
        random.setstate(py_state)


@contextmanager
def untouched(model: nn.Module) -> Iterator[None]:
    """Run the body, then put back the RNG states, module modes, buffers and `.grad` of `model`."""
    modes = [(m, m.training) for m in model.modules()]
    buffers = [(b, b.detach().clone()) for b in model.buffers()]
    grads = [(p, p.grad, None if p.grad is None else p.grad.detach().clone()) for p in model.parameters()]
    with global_rng_kept():
        try:
            yield
        finally:
            with torch.no_grad():
                for m, training in modes:
                    m.training = training
                for b, saved in buffers:
                    b.copy_(saved)
                for p, g, saved_g in grads:
                    p.grad = g  # the same tensor object the optimizer will read
                    if g is not None and saved_g is not None:
                        g.copy_(saved_g)
