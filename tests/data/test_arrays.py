"""A user's own data: arrays in either layout, floats, torch Datasets and .npz files via the config."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from bnlab.config import DataConfig
from bnlab.data import DeviceData, from_arrays, load
from bnlab.errors import DataError, UserError


def _data(n=200, m=40, hw=(8, 8), seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, 3, *hw), dtype=np.uint8)
    y = np.arange(n) % 4
    tx = rng.integers(0, 256, (m, 3, *hw), dtype=np.uint8)
    ty = rng.integers(0, 4, m)
    return x, y, tx, ty


def test_uint8_nchw_arrays_give_splits():
    x, y, tx, ty = _data()
    s = from_arrays(x, y, tx, ty, val_size=40, seed=1)
    assert (len(s.train_y), len(s.val_y), len(s.test_y)) == (160, 40, 40)
    assert s.train_x.dtype == torch.uint8 and s.train_x.shape[1:] == (3, 8, 8)
    assert s.num_classes == 4 and s.class_names == ["0", "1", "2", "3"] and s.name == "arrays"
    assert np.array_equal(s.test_x.numpy(), tx) and np.array_equal(s.test_y.numpy(), ty)
    assert torch.bincount(s.val_y).tolist() == [10] * 4
    x0, _ = DeviceData(s, "cpu").train_batch(0, 32, 0, augment=True)  # works with non-32 sizes too
    assert x0.shape == (32, 3, 8, 8)


def test_nhwc_and_tensor_inputs_equal_nchw():
    x, y, tx, ty = _data()
    a = from_arrays(x, y, tx, ty, val_size=40)
    b = from_arrays(
        x.transpose(0, 2, 3, 1), y, torch.from_numpy(tx).permute(0, 2, 3, 1), torch.from_numpy(ty)
    )
    b40 = from_arrays(x.transpose(0, 2, 3, 1), y, tx.transpose(0, 2, 3, 1), ty, val_size=40, layout="NHWC")
    assert torch.equal(a.test_x, b.test_x) and torch.equal(a.train_x, b40.train_x)


def test_float_images_stay_float_in_pixel_units():
    x, y, tx, ty = _data()
    s = from_arrays(x / 255.0, y, tx / 255.0, ty, val_size=40)
    u = from_arrays(x, y, tx, ty, val_size=40)
    assert s.train_x.dtype == torch.float32
    assert np.allclose(s.mean, u.mean, atol=1e-6) and np.allclose(s.std, u.std, atol=1e-6)
    dd_f, dd_u = DeviceData(s, "cpu"), DeviceData(u, "cpu")
    assert torch.allclose(dd_f.train_batch(3, 16, 0, True)[0], dd_u.train_batch(3, 16, 0, True)[0], atol=1e-5)


def test_torch_dataset_input():
    x, y, tx, ty = _data()
    ds = TensorDataset(torch.from_numpy(x).float() / 255, torch.from_numpy(y))
    test = TensorDataset(torch.from_numpy(tx), torch.from_numpy(ty))
    s = from_arrays(ds, None, test, None, val_size=40)
    ref = from_arrays(x / 255.0, y, tx / 255.0, ty, val_size=40)
    assert torch.allclose(s.train_x, ref.train_x) and torch.equal(s.train_y, ref.train_y)
    with pytest.raises(UserError, match="leave train_y out"):
        from_arrays(ds, y, test, None)


@pytest.mark.parametrize(
    "bad,match",
    [
        (dict(train_y=np.arange(199)), "train_y must be 200 integer"),
        (dict(train_y=np.full(200, 0.5)), "integer class labels"),
        (dict(train_x=np.zeros((200, 5))), "give images as N x C x H x W"),
        (dict(train_x=np.full((200, 3, 8, 8), 300)), "outside 0..255"),
        (dict(train_x=np.full((200, 3, 8, 8), np.nan)), "NaN"),
        (dict(test_x=np.zeros((40, 3, 9, 9), np.uint8)), "make them match"),
        (dict(test_x=None), "no test images"),
        (dict(num_classes=3), "raise num_classes"),
    ],
)
def test_bad_user_arrays_are_one_sentence_user_errors(bad, match):
    x, y, tx, ty = _data()
    args = dict(train_x=x, train_y=y, test_x=tx, test_y=ty)
    kw = {k: v for k, v in bad.items() if k == "num_classes"}
    args.update({k: v for k, v in bad.items() if k != "num_classes"})
    with pytest.raises(UserError, match=match) as e:
        from_arrays(**args, **kw)
    assert "\n" not in str(e.value)


def test_npz_through_the_config(tmp_path):
    x, y, tx, ty = _data()
    path = tmp_path / "mine.npz"
    np.savez(path, train_x=x, train_y=y, test_x=tx, test_y=ty, class_names=np.array(["a", "b", "c", "d"]))
    s = load(DataConfig(name="arrays", root=str(path), val_size=40, subset=100), seed=0)
    assert (len(s.train_y), len(s.val_y), len(s.test_y)) == (100, 40, 40)
    assert s.class_names == ["a", "b", "c", "d"] and torch.bincount(s.train_y).tolist() == [25] * 4
    with pytest.raises(DataError, match="needs data.root"):
        load(DataConfig(name="arrays"), seed=0)
    with pytest.raises(DataError, match="does not exist"):
        load(DataConfig(name="arrays", root=str(tmp_path / "no.npz")), seed=0)
    np.savez(tmp_path / "partial.npz", train_x=x)
    with pytest.raises(DataError, match="lacks train_y, test_x, test_y"):
        load(DataConfig(name="arrays", root=str(tmp_path / "partial.npz")), seed=0)
    np.savez(tmp_path / "objects.npz", train_x=np.array([object()] * 3), train_y=y, test_x=tx, test_y=ty)
    with pytest.raises(DataError, match="not a readable .npz"):
        load(DataConfig(name="arrays", root=str(tmp_path / "objects.npz")), seed=0)
