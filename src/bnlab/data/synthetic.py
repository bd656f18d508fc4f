"""A synthetic, learnable image classification set for tests: cheap, deterministic, CIFAR-shaped.

Each class has its own colour cast and an oriented sinusoidal grating; every image adds a random
grating phase, a random brightness offset and pixel noise. The colour cast survives crops and flips
and a small ResNet learns it within an epoch; the grating orientation gives a second, harder cue.
"""

from __future__ import annotations

import math

import torch

from bnlab.data.seeds import cpu_generator
from bnlab.data.splits import RawData

CLASS_NAMES = [f"class_{i}" for i in range(10)]


def _images(
    labels: torch.Tensor, colour: torch.Tensor, angle: torch.Tensor, gen: torch.Generator
) -> torch.Tensor:
    n = labels.numel()
    size = 32
    coords = torch.arange(size, dtype=torch.float32)
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")  # 32 x 32, pixel units
    theta = angle[labels].view(n, 1, 1)
    phase = torch.rand(n, 1, 1, generator=gen) * 2 * math.pi
    freq = 2 * math.pi / 8.0  # one period every 8 pixels: survives a 4-px shift as a phase change
    grating = torch.sin(freq * (xx * torch.cos(theta) + yy * torch.sin(theta)) + phase)  # n x 32 x 32
    brightness = torch.randn(n, 1, 1, 1, generator=gen) * 15.0  # grey levels
    noise = torch.randn(n, 3, size, size, generator=gen) * 30.0  # grey levels
    img = 128.0 + 35.0 * colour[labels].view(n, 3, 1, 1) + 30.0 * grating.unsqueeze(1) + brightness + noise
    return img.round().clamp(0, 255).to(torch.uint8)


def _labels(n: int, num_classes: int, gen: torch.Generator) -> torch.Tensor:
    base = torch.arange(n, dtype=torch.int64) % num_classes  # balanced to within one image per class
    return base[torch.randperm(n, generator=gen)]


def make_synthetic(n_train: int, n_test: int, seed: int = 0, num_classes: int = 10) -> RawData:
    """`n_train` + `n_test` uint8 3 x 32 x 32 images of `num_classes` balanced classes, fixed by `seed`."""
    if n_train < 1 or n_test < 1:
        from bnlab.errors import UserError

        raise UserError("data.synthetic_train and data.synthetic_test must be positive numbers of images")
    g = cpu_generator(seed, "synthetic", "classes")
    colour = torch.randn(num_classes, 3, generator=g)
    colour = colour / colour.norm(dim=1, keepdim=True)  # unit colour casts, distinct directions
    angle = torch.arange(num_classes, dtype=torch.float32) * math.pi / num_classes  # distinct orientations
    g_train = cpu_generator(seed, "synthetic", "train")
    g_test = cpu_generator(seed, "synthetic", "test")
    train_y = _labels(n_train, num_classes, g_train)
    test_y = _labels(n_test, num_classes, g_test)
    names = CLASS_NAMES if num_classes == 10 else [f"class_{i}" for i in range(num_classes)]
    return RawData(
        train_x=_images(train_y, colour, angle, g_train),
        train_y=train_y,
        test_x=_images(test_y, colour, angle, g_test),
        test_y=test_y,
        num_classes=num_classes,
        name="synthetic",
        class_names=list(names),
    )
