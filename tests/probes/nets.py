"""Small models for probe tests: nested containers, stride 2, dilation 2, groups 2, residual, in-place ReLU."""

from __future__ import annotations

import torch
from torch import nn


class Block(nn.Module):
    def __init__(self, c: int, norm: bool) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c, c, 3, padding=2, dilation=2, groups=2, bias=False),
            nn.BatchNorm2d(c) if norm else nn.Identity(),
            nn.ReLU(inplace=True),
            nn.Conv2d(c, c, 3, padding=1, bias=not norm),
            nn.BatchNorm2d(c) if norm else nn.Identity(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        out += x
        return torch.relu_(out)


class Net(nn.Module):
    """conv(stride 2) -> {stage: [Block, Block]} -> conv(groups 2, padding_mode reflect) -> pool -> fc."""

    def __init__(self, norm: bool = True, c: int = 4, classes: int = 5) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, c, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(c) if norm else nn.Identity(),
            nn.ReLU(),
        )
        self.stages = nn.ModuleDict({"s1": nn.Sequential(Block(c, norm), Block(c, norm))})
        self.head_conv = nn.Conv2d(c, 2 * c, 3, stride=2, padding=1, groups=2, padding_mode="reflect")
        self.fc = nn.Linear(2 * c, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = self.stages["s1"](x)
        x = torch.relu(self.head_conv(x))
        return self.fc(x.mean(dim=(2, 3)))

    def block_outputs(self) -> list[str]:
        return ["stem", "stages.s1.0", "stages.s1.1", "head_conv"]

    def paper_layers(self) -> dict[str, int]:
        convs = [n for n, m in self.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
        return {n: i + 1 for i, n in enumerate(convs)}


def make(norm: bool = True, seed: int = 0, dtype: torch.dtype = torch.float64, batch: int = 8, hw: int = 8):
    torch.manual_seed(seed)
    net = Net(norm).to(dtype)
    for m in net.modules():  # non-trivial BN affine and running stats
        if isinstance(m, nn.BatchNorm2d):
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.8, 1.2)
            m.num_batches_tracked.fill_(3)
    x = torch.randn(batch, 3, hw, hw, dtype=dtype)
    y = torch.arange(batch) % 5
    return net, x, y
