"""Reading CIFAR folders: search order, both pickle flavours, and one-sentence errors for bad files."""

from __future__ import annotations

import os
import pickle

import cifar_fakes
import numpy as np
import pytest
import torch

from bnlab.config import DataConfig
from bnlab.data import cifar, load
from bnlab.errors import DataError


@pytest.fixture(autouse=True)
def _isolated_search(monkeypatch, tmp_path):
    # no real data from the developer's machine leaks into these tests
    monkeypatch.delenv("BNLAB_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


@pytest.mark.parametrize("flavour", ["py2", "bytes", "py3"])
def test_reads_cifar10_in_every_pickle_flavour(tmp_path, flavour):
    ref = cifar_fakes.fake_cifar10(tmp_path, flavour)
    raw = cifar.read("cifar10", tmp_path)
    assert raw.train_x.dtype == torch.uint8 and raw.train_x.shape == (200, 3, 32, 32)
    assert raw.test_x.shape == (30, 3, 32, 32)
    assert raw.train_y.dtype == torch.int64
    # pixel (c, r, q) of image i is byte c*1024 + r*32 + q of its row: R, G, B planes, row-major
    i, c, r, q = 17, 2, 5, 30
    assert raw.train_x[i, c, r, q].item() == ref["train_x"][i, c * 1024 + r * 32 + q]
    assert np.array_equal(raw.train_x.reshape(200, -1).numpy(), ref["train_x"])
    assert np.array_equal(raw.test_x.reshape(30, -1).numpy(), ref["test_x"])
    assert np.array_equal(raw.train_y.numpy(), ref["train_y"])
    assert raw.class_names == cifar_fakes.CIFAR10_NAMES and raw.num_classes == 10


def test_reads_cifar100(tmp_path):
    ref = cifar_fakes.fake_cifar100(tmp_path, "py2")
    raw = cifar.read("cifar100", tmp_path)
    assert raw.num_classes == 100 and raw.class_names[3] == "fine3"
    assert np.array_equal(raw.train_y.numpy(), ref["train_y"])
    assert np.array_equal(raw.test_x.reshape(50, -1).numpy(), ref["test_x"])


def test_root_may_name_the_dataset_folder_itself(tmp_path):
    cifar_fakes.fake_cifar10(tmp_path)
    assert cifar.locate("cifar10", tmp_path / "cifar-10-batches-py") == tmp_path / "cifar-10-batches-py"
    assert cifar.read("cifar10", tmp_path / "cifar-10-batches-py").train_x.shape[0] == 200


def test_search_order_root_then_env_then_cache(tmp_path, monkeypatch):
    a, b, home = tmp_path / "a", tmp_path / "b", tmp_path / "home"
    for p in (a, b, home / ".cache" / "bnlab"):
        cifar_fakes.fake_cifar10(p)
    monkeypatch.setenv("BNLAB_DATA", str(b))
    assert cifar.locate("cifar10", a) == a / "cifar-10-batches-py"
    assert cifar.locate("cifar10", tmp_path / "nowhere") == b / "cifar-10-batches-py"
    assert cifar.locate("cifar10") == b / "cifar-10-batches-py"
    monkeypatch.delenv("BNLAB_DATA")
    assert cifar.locate("cifar10") == home / ".cache" / "bnlab" / "cifar-10-batches-py"


def test_missing_dataset_names_the_fix(tmp_path):
    with pytest.raises(DataError) as e:
        cifar.read("cifar10", tmp_path / "empty")
    msg = str(e.value)
    assert "bnlab data download cifar10" in msg and "data.root" in msg and str(tmp_path / "empty") in msg
    assert "\n" not in msg


def test_load_through_config_and_registry(tmp_path):
    cifar_fakes.fake_cifar10(tmp_path)
    s = load(DataConfig(name="cifar10", root=str(tmp_path), val_size=50), seed=0)
    assert (len(s.train_y), len(s.val_y), len(s.test_y)) == (150, 50, 30)
    assert s.name == "cifar10" and s.num_classes == 10
    assert torch.bincount(s.val_y, minlength=10).tolist() == [5] * 10


def _corrupt(folder, name, obj=None, raw=None):
    path = folder / name
    path.write_bytes(raw if raw is not None else pickle.dumps(obj, protocol=2))
    return path


CORRUPTIONS = {
    "missing file": (None, "is missing"),
    "truncated": (b"truncate", "is corrupt"),
    "not a dict": ([1, 2, 3], "not a dict"),
    "no data key": ({"labels": [0] * 40}, "no 'data'"),
    "float data": ({"data": np.zeros((40, 3072), np.float32), "labels": [0] * 40}, "N x 3072 uint8"),
    "wrong shape": ({"data": np.zeros((40, 1024), np.uint8), "labels": [0] * 40}, "N x 3072 uint8"),
    "label count": ({"data": np.zeros((40, 3072), np.uint8), "labels": [0] * 39}, "integer labels"),
    "label range": ({"data": np.zeros((40, 3072), np.uint8), "labels": [10] * 40}, "labels outside 0..9"),
    "string labels": ({"data": np.zeros((40, 3072), np.uint8), "labels": ["a"] * 40}, "integer labels"),
}


@pytest.mark.parametrize("case", sorted(CORRUPTIONS))
def test_corrupt_batch_names_file_and_fix(tmp_path, case):
    cifar_fakes.fake_cifar10(tmp_path)
    folder = tmp_path / "cifar-10-batches-py"
    obj, expected = CORRUPTIONS[case]
    path = folder / "data_batch_3"
    if obj is None:
        path.unlink()
    elif obj == b"truncate":
        path.write_bytes(path.read_bytes()[:500])
    else:
        _corrupt(folder, "data_batch_3", obj)
    with pytest.raises(DataError) as e:
        load(DataConfig(name="cifar10", root=str(tmp_path)), seed=0)
    msg = str(e.value)
    assert str(path) in msg and expected in msg, msg
    assert "bnlab data download cifar10" in msg and "\n" not in msg


def test_bad_meta_file(tmp_path):
    cifar_fakes.fake_cifar10(tmp_path)
    path = _corrupt(tmp_path / "cifar-10-batches-py", "batches.meta", {"label_names": ["a"] * 3})
    with pytest.raises(DataError, match="label_names"):
        cifar.read("cifar10", tmp_path)
    assert path.exists()


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_evil_dataset_folder_is_refused_without_running_code(tmp_path):
    # the acceptance check's attack: every file of the folder carries the payload
    folder = tmp_path / "evil" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    marker = tmp_path / "PWNED"
    for name in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta"]:
        (folder / name).write_bytes(pickle.dumps({"data": _Evil(marker), "labels": [0]}, protocol=2))
    with pytest.raises(DataError) as e:
        load(DataConfig(name="cifar10", root=str(tmp_path / "evil")), seed=0)
    assert not marker.exists()
    msg = str(e.value)
    assert "refused" in msg and "system" in msg and "\n" not in msg


@pytest.mark.slow
def test_real_cifar10_from_shared_jpeg_copy(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    script = Path("/work/shared/data/make_cifar10.py")
    if not script.exists():
        pytest.skip("no shared CIFAR-10 copy on this machine")
    subprocess.run([sys.executable, str(script), str(tmp_path)], check=True, capture_output=True)
    s = load(DataConfig(name="cifar10", root=str(tmp_path)), seed=0)
    assert (len(s.train_y), len(s.val_y), len(s.test_y)) == (45000, 5000, 10000)
    assert torch.bincount(s.val_y).tolist() == [500] * 10
    assert torch.bincount(s.test_y).tolist() == [1000] * 10
    # CIFAR-10's well-known channel statistics (JPEG copy: agrees to ~3 decimals)
    assert np.allclose(s.mean, (0.4914, 0.4822, 0.4465), atol=3e-3)
    assert np.allclose(s.std, (0.2470, 0.2435, 0.2616), atol=3e-3)
    assert s.class_names[0] == "airplane"
