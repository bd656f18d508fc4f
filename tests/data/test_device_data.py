"""DeviceData: vectorized crop/flip against a per-image reference, batches as functions of (seed, step)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bnlab.data import DeviceData, crop_flip, draw_crop_flip, make_splits, make_synthetic
from bnlab.errors import UserError


def _reference_crop_flip(x: np.ndarray, dy, dx, flip, pad: int = 4) -> np.ndarray:
    """One image at a time: zero-pad, slice, mirror (the slow, obvious twin)."""
    n, c, h, w = x.shape
    out = np.empty_like(x)
    for i in range(n):
        padded = np.zeros((c, h + 2 * pad, w + 2 * pad), dtype=x.dtype)
        padded[:, pad : pad + h, pad : pad + w] = x[i]
        crop = padded[:, int(dy[i]) : int(dy[i]) + h, int(dx[i]) : int(dx[i]) + w]
        out[i] = crop[:, :, ::-1] if bool(flip[i]) else crop
    return out


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float64])
def test_crop_flip_matches_per_image_reference(dtype):
    g = torch.Generator().manual_seed(0)
    x = torch.randint(1, 256, (64, 3, 32, 32), generator=g).to(dtype)  # no zeros: padding is visible
    dy, dx, flip = draw_crop_flip(64, g)
    got = crop_flip(x, dy, dx, flip)
    ref = _reference_crop_flip(x.numpy(), dy.numpy(), dx.numpy(), flip.numpy())
    assert got.dtype == dtype and np.array_equal(got.numpy(), ref)


def test_crop_flip_every_offset_and_flip_non_square():
    x = torch.randint(1, 256, (162, 2, 5, 7), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    grid = torch.cartesian_prod(torch.arange(9), torch.arange(9), torch.arange(2))  # all 162 cases
    dy, dx, flip = grid[:, 0], grid[:, 1], grid[:, 2].bool()
    ref = _reference_crop_flip(x.numpy(), dy.numpy(), dx.numpy(), flip.numpy())
    assert np.array_equal(crop_flip(x, dy, dx, flip).numpy(), ref)
    centre = (dy == 4) & (dx == 4) & ~flip
    assert torch.equal(crop_flip(x, dy, dx, flip)[centre], x[centre])  # offset 4 = no shift


def test_draws_cover_the_range():
    dy, dx, flip = draw_crop_flip(5000, torch.Generator().manual_seed(0))
    assert set(dy.tolist()) == set(range(9)) == set(dx.tolist())
    assert 0.45 < flip.float().mean().item() < 0.55


@pytest.fixture(scope="module")
def splits():
    return make_splits(make_synthetic(1000, 200), val_size=100, subset=None, seed=0)


def test_normalize_matches_float64_reference(splits):
    dd = DeviceData(splits, "cpu")
    x = splits.test_x[:16]
    mean = torch.tensor(splits.mean, dtype=torch.float64).view(1, 3, 1, 1)
    std = torch.tensor(splits.std, dtype=torch.float64).view(1, 3, 1, 1)
    ref = (x.to(torch.float64) / 255 - mean) / std
    got = dd.normalize(x)
    assert got.dtype == torch.float32
    assert torch.allclose(got.double(), ref, atol=1e-5)
    # normalized train images have per-channel mean 0 and std 1
    z = dd.normalize(splits.train_x).double()
    assert torch.allclose(z.mean((0, 2, 3)), torch.zeros(3, dtype=torch.float64), atol=1e-4)
    assert torch.allclose(z.std((0, 2, 3), unbiased=False), torch.ones(3, dtype=torch.float64), atol=1e-4)


def test_epoch_visits_each_image_once_drop_last(splits):
    dd = DeviceData(splits, "cpu")
    bs = 64
    spe = dd.steps_per_epoch(bs)
    assert spe == 900 // 64 == 14
    for epoch in (0, 1):
        idx = torch.cat([dd.train_indices(epoch * spe + s, bs, seed=5) for s in range(spe)])
        assert idx.numel() == spe * bs and idx.unique().numel() == spe * bs
    e0 = torch.cat([dd.train_indices(s, bs, 5) for s in range(spe)])
    e1 = torch.cat([dd.train_indices(spe + s, bs, 5) for s in range(spe)])
    assert not torch.equal(e0, e1)  # a fresh order each epoch
    with pytest.raises(UserError, match="batch_size 901 exceeds the 900"):
        dd.steps_per_epoch(901)


@pytest.mark.parametrize("augment", [False, True])
def test_batches_are_a_function_of_seed_and_step(splits, augment):
    bs, steps = 100, 30  # 9 steps per epoch: crosses three epoch boundaries
    a = DeviceData(splits, "cpu")
    straight = [a.train_batch(s, bs, seed=7, augment=augment) for s in range(steps)]
    b = DeviceData(splits, "cpu")  # a "resumed" run: fresh object, starts mid-epoch, jumps around
    for s in [17, 3, 29, 18, 0, 9, 8]:
        x, y = b.train_batch(s, bs, seed=7, augment=augment)
        assert torch.equal(x, straight[s][0]) and torch.equal(y, straight[s][1])
    x, _ = a.train_batch(0, bs, seed=8, augment=augment)
    assert not torch.equal(x, straight[0][0])


def test_augmented_batch_equals_reference_on_the_same_draws(splits):
    dd = DeviceData(splits, "cpu")
    seed, step, bs = 3, 11, 50
    x, y = dd.train_batch(step, bs, seed, augment=True)
    idx = dd.train_indices(step, bs, seed)
    dy, dx, flip = draw_crop_flip(bs, dd.augment_generator(seed, step))
    ref = _reference_crop_flip(splits.train_x[idx].numpy(), dy.numpy(), dx.numpy(), flip.numpy())
    assert torch.equal(x, dd.normalize(torch.from_numpy(ref)))
    assert torch.equal(y, splits.train_y[idx])
    plain, _ = dd.train_batch(step, bs, seed, augment=False)
    assert torch.equal(plain, dd.normalize(splits.train_x[idx]))


def test_eval_batches(splits):
    dd = DeviceData(splits, "cpu")
    batches = list(dd.eval_batches("test", 64))
    assert [len(y) for _, y in batches] == [64, 64, 64, 8]
    x = torch.cat([b[0] for b in batches])
    assert torch.equal(x, dd.normalize(splits.test_x))
    assert torch.equal(torch.cat([b[1] for b in batches]), splits.test_y)
    val = torch.cat([y for _, y in dd.eval_batches("val", 1000)])
    assert torch.equal(val, splits.val_y)
    te = [torch.cat(t) for t in zip(*dd.eval_batches("train_eval", 64, n=300, seed=1))]
    te2 = [
        torch.cat(t) for t in zip(*DeviceData(splits, "cpu").eval_batches("train_eval", 32, n=300, seed=1))
    ]
    assert te[0].shape == (300, 3, 32, 32) and torch.equal(te[0], te2[0]) and torch.equal(te[1], te2[1])
    assert torch.bincount(te[1], minlength=10).tolist() == [30] * 10
    idx = dd.eval_indices("train_eval", 300, 1)
    assert torch.equal(te[0], dd.normalize(splits.train_x[idx]))
    with pytest.raises(ValueError, match="unknown split"):
        next(dd.eval_batches("nope", 8))  # type: ignore[arg-type]


def test_probe_batches(splits):
    dd = DeviceData(splits, "cpu")
    a = dd.probe_batches(3, 100, seed=2)
    b = DeviceData(splits, "cpu").probe_batches(3, 100, seed=2)
    assert len(a) == 3 and all(torch.equal(p[0], q[0]) and torch.equal(p[1], q[1]) for p, q in zip(a, b))
    assert not torch.equal(a[0][0], dd.probe_batches(3, 100, seed=3)[0][0])
    # unaugmented train images, disjoint across batches
    idx = dd.probe_indices(3, 100, seed=2)
    assert idx.shape == (3, 100) and idx.unique().numel() == 300
    for (x, y), i in zip(a, idx):
        assert torch.equal(x, dd.normalize(splits.train_x[i])) and torch.equal(y, splits.train_y[i])
    many = dd.probe_indices(20, 100, seed=2)  # more than one pass over 900 images: new orders appended
    assert many.shape == (20, 100) and torch.equal(many[:3], idx)
    assert many.flatten()[:900].unique().numel() == 900
    assert len(dd.probe_batches(20, 100, seed=2)) == 20


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_batches_deterministic_and_match_reference(splits):
    dd = DeviceData(splits, "cuda")
    x, y = dd.train_batch(12, 128, 4, augment=True)
    assert x.is_cuda and x.dtype == torch.float32
    x2, _ = DeviceData(splits, "cuda").train_batch(12, 128, 4, augment=True)
    assert torch.equal(x, x2)
    idx = dd.train_indices(12, 128, 4).cpu()
    dy, dx, flip = draw_crop_flip(128, dd.augment_generator(4, 12))
    ref = _reference_crop_flip(
        splits.train_x[idx].numpy(), dy.cpu().numpy(), dx.cpu().numpy(), flip.cpu().numpy()
    )
    assert torch.allclose(x.cpu(), DeviceData(splits, "cpu").normalize(torch.from_numpy(ref)))
    assert torch.equal(y.cpu(), splits.train_y[idx])
