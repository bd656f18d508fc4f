"""The synthetic set: deterministic, CIFAR-shaped, balanced, cheap and learnable."""

from __future__ import annotations

import time

import torch

from bnlab.config import DataConfig
from bnlab.data import load, make_synthetic


def test_shapes_dtype_balance_and_determinism():
    a = make_synthetic(2048, 512)
    assert a.train_x.shape == (2048, 3, 32, 32) and a.train_x.dtype == torch.uint8
    assert a.test_x.shape == (512, 3, 32, 32) and a.test_y.dtype == torch.int64
    assert a.num_classes == 10 and len(a.class_names) == 10
    counts = torch.bincount(a.train_y, minlength=10)
    assert counts.max() - counts.min() <= 1
    b = make_synthetic(2048, 512)
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.test_y, b.test_y)
    assert not torch.equal(a.train_x, make_synthetic(2048, 512, seed=1).train_x)
    # the train images do not depend on the test size
    assert torch.equal(make_synthetic(2048, 64).train_x, a.train_x)


def test_cheap():
    t = time.perf_counter()
    make_synthetic(2048, 512)
    assert time.perf_counter() - t < 5.0  # ~0.3 s on 2 idle cores; generous for loaded CI machines


def test_learnable_and_not_trivial():
    raw = make_synthetic(2000, 1000)

    def feats(x):  # per-channel means: the colour cue, unchanged by crops and flips
        return x.float().mean((2, 3))

    f, y = feats(raw.train_x), raw.train_y
    centroids = torch.stack([f[y == c].mean(0) for c in range(10)])
    pred = torch.cdist(feats(raw.test_x), centroids).argmin(1)
    acc = (pred == raw.test_y).float().mean().item()
    assert 0.5 < acc < 0.999, acc  # far above chance (0.1), not a lookup table either


def test_load_synthetic_through_config():
    s = load(DataConfig(name="synthetic", synthetic_train=500, synthetic_test=100, val_size=50), seed=1)
    assert (len(s.train_y), len(s.val_y), len(s.test_y)) == (450, 50, 100)
    assert s.name == "synthetic" and s.num_classes == 10
    assert all(0 < m < 1 for m in s.mean) and all(0 < v < 1 for v in s.std)
