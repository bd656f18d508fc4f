"""Writers of small fake CIFAR folders in the official layout, in both pickle flavours.

py2: what Python 2's cPickle wrote for the official files: every str is an 8-bit string (BINSTRING
     opcodes, so keys load as str under encoding='latin1'), array globals spelled `numpy.core`.
bytes: a Python-3 pickle whose keys are bytes objects (b"data") and globals spelled `numpy.core`.
py3: a plain Python-3 pickle with str keys from the installed numpy (`numpy._core` on numpy 2).
"""

from __future__ import annotations

import io
import pickle
import struct
from pathlib import Path

import numpy as np

CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


class _Py2Pickler(pickle._Pickler):  # the pure-Python pickler lets us choose opcodes
    dispatch = dict(pickle._Pickler.dispatch)

    def save_str8(self, obj: bytes | str) -> None:
        raw = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(raw) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(raw)]) + raw)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(raw)) + raw)
        self.memoize(obj)

    dispatch[bytes] = save_str8
    dispatch[str] = save_str8


def _to_numpy_core(blob: bytes) -> bytes:
    # protocol 2 spells globals as text lines, so renaming the module is a plain substitution
    return blob.replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")


def dumps(obj: dict, flavour: str, protocol: int = 2) -> bytes:
    if flavour == "py2":
        buf = io.BytesIO()
        _Py2Pickler(buf, protocol=2).dump(obj)
        return _to_numpy_core(buf.getvalue())
    if flavour == "bytes":
        obj = {(k.encode() if isinstance(k, str) else k): v for k, v in obj.items()}
        return _to_numpy_core(pickle.dumps(obj, protocol=2))
    if flavour == "py3":
        return pickle.dumps(obj, protocol=protocol)
    raise ValueError(flavour)


def write(path: Path, obj: dict, flavour: str, protocol: int = 2) -> None:
    path.write_bytes(dumps(obj, flavour, protocol))


def fake_cifar10(
    root: Path, flavour: str = "py3", per_batch: int = 40, n_test: int = 30, seed: int = 0, protocol: int = 2
) -> dict[str, np.ndarray]:
    """Write root/cifar-10-batches-py/ with 5 x per_batch train and n_test test images; return the arrays."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    xs, ys = [], []
    for i in range(1, 6):
        x = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        y = [int(v) for v in np.arange(per_batch) % 10]  # every class in every batch
        write(
            folder / f"data_batch_{i}",
            {
                "batch_label": f"training batch {i} of 5",
                "labels": y,
                "data": x,
                "filenames": [f"img_{i}_{j}.png" for j in range(per_batch)],
            },
            flavour,
            protocol,
        )
        xs.append(x)
        ys.append(np.asarray(y))
    tx = rng.integers(0, 256, (n_test, 3072), dtype=np.uint8)
    ty = [int(v) for v in rng.integers(0, 10, n_test)]
    write(
        folder / "test_batch",
        {"batch_label": "testing batch 1 of 1", "labels": ty, "data": tx},
        flavour,
        protocol,
    )
    write(
        folder / "batches.meta",
        {"num_cases_per_batch": per_batch, "label_names": CIFAR10_NAMES, "num_vis": 3072},
        flavour,
        protocol,
    )
    return {
        "train_x": np.concatenate(xs),
        "train_y": np.concatenate(ys),
        "test_x": tx,
        "test_y": np.asarray(ty),
    }


def fake_cifar100(
    root: Path, flavour: str = "py3", n_train: int = 300, n_test: int = 50, seed: int = 0
) -> dict:
    rng = np.random.default_rng(seed)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    x = rng.integers(0, 256, (n_train, 3072), dtype=np.uint8)
    y = [int(v) for v in np.arange(n_train) % 100]
    tx = rng.integers(0, 256, (n_test, 3072), dtype=np.uint8)
    ty = [int(v) for v in rng.integers(0, 100, n_test)]
    write(folder / "train", {"data": x, "fine_labels": y, "coarse_labels": [v // 5 for v in y]}, flavour)
    write(folder / "test", {"data": tx, "fine_labels": ty, "coarse_labels": [v // 5 for v in ty]}, flavour)
    write(
        folder / "meta",
        {
            "fine_label_names": [f"fine{i}" for i in range(100)],
            "coarse_label_names": [f"coarse{i}" for i in range(20)],
        },
        flavour,
    )
    return {"train_x": x, "train_y": np.asarray(y), "test_x": tx, "test_y": np.asarray(ty)}
