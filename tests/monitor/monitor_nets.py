"""A small BN convnet and a seeded plain training loop, shared by the monitor tests."""

from __future__ import annotations

import torch
from torch import nn


def small_bn_net(seed: int = 0, norm: bool = True) -> nn.Module:
    torch.manual_seed(seed)
    bn = (lambda c: nn.BatchNorm2d(c)) if norm else (lambda c: nn.Identity())
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=not norm),
        bn(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, bias=not norm),
        bn(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 10),
    )


def batches(n: int, batch: int = 16, seed: int = 1) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(batch, 3, 8, 8, generator=g), torch.randint(0, 10, (batch,), generator=g))
        for _ in range(n)
    ]


def train(model: nn.Module, data, make_monitor=None, *, dropout_noise: bool = True):
    """Plain SGD with momentum and weight decay; draws from the global RNG each step (as augmentation or
    dropout would), so a monitor that moved the RNG would change the weights. `make_monitor(model, opt)`
    builds the Monitor (None: the bare loop); returns (optimizer, monitor closed)."""
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    monitor = make_monitor(model, opt) if make_monitor is not None else None
    for step, (x, y) in enumerate(data):
        if dropout_noise:
            x = x + 0.01 * torch.randn_like(x)
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        if monitor is not None:
            monitor.step(step, x, y, loss=loss)
        opt.step()
    if monitor is not None:
        monitor.close()
    return opt, monitor
