"""A user's own data: numpy arrays, torch tensors or a torch Dataset -> the same Splits as CIFAR.

In Python: `bnlab.data.from_arrays(train_x, train_y, test_x, test_y, ...)`. From a config:
`data.name=arrays` with `data.root` naming an .npz file holding train_x, train_y, test_x, test_y
(and optionally class_names), read with numpy's allow_pickle=False.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from bnlab.config import DataConfig
from bnlab.data.splits import RawData, Splits, make_splits
from bnlab.errors import DataError, UserError

Layout = Literal["auto", "NCHW", "NHWC"]


def _from_dataset(ds: torch.utils.data.Dataset, what: str) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for i in range(len(ds)):  # type: ignore[arg-type]
        item = ds[i]
        if not isinstance(item, tuple | list) or len(item) != 2:
            raise UserError(f"{what}[{i}] is not an (image, label) pair; give arrays or a Dataset of pairs")
        x, y = item
        xs.append(np.asarray(x.numpy() if isinstance(x, torch.Tensor) else x))
        ys.append(int(y))
    if not xs:
        raise UserError(f"{what} is empty; give at least one image")
    return np.stack(xs), np.asarray(ys, dtype=np.int64)


def _images(x: Any, what: str, layout: Layout) -> torch.Tensor:
    arr = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if arr.ndim == 3:  # N x H x W: one channel
        arr = arr[:, None]
    if arr.ndim != 4:
        raise UserError(f"{what} has shape {arr.shape}; give images as N x C x H x W (or N x H x W x C)")
    if layout == "NHWC" or (
        layout == "auto" and arr.shape[-1] in (1, 3, 4) and arr.shape[1] not in (1, 3, 4)
    ):
        arr = arr.transpose(0, 3, 1, 2)
    if arr.dtype == np.uint8:
        return torch.from_numpy(np.ascontiguousarray(arr))
    if np.issubdtype(arr.dtype, np.integer):
        if arr.size and (arr.min() < 0 or arr.max() > 255):
            raise UserError(f"{what} holds integers outside 0..255; give uint8 pixels or floats in [0, 1]")
        return torch.from_numpy(np.ascontiguousarray(arr.astype(np.uint8)))
    if np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise UserError(f"{what} holds NaN or infinite values; clean the images first")
        return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))  # [0, 1] pixel units
    raise UserError(f"{what} has dtype {arr.dtype}; give uint8 pixels or floats in [0, 1]")


def _labels(y: Any, n: int, what: str) -> torch.Tensor:
    arr = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
    if (
        arr.ndim != 1
        or arr.shape[0] != n
        or not (np.issubdtype(arr.dtype, np.integer) and arr.dtype != np.bool_)
    ):
        raise UserError(
            f"{what} must be {n} integer class labels (one per image), got shape {arr.shape} {arr.dtype}"
        )
    if arr.size and arr.min() < 0:
        raise UserError(f"{what} holds negative labels; number classes 0..K-1")
    return torch.from_numpy(arr.astype(np.int64))


def raw_from_arrays(
    train_x: Any,
    train_y: Any = None,
    test_x: Any = None,
    test_y: Any = None,
    *,
    num_classes: int | None = None,
    class_names: list[str] | None = None,
    name: str = "arrays",
    layout: Layout = "auto",
) -> RawData:
    """Check and convert a user's train and test data (arrays/tensors, or Datasets with y=None)."""
    parts = {}
    for split, x, y in (("train", train_x, train_y), ("test", test_x, test_y)):
        if x is None:
            raise UserError(
                f"no {split} images given; pass {split}_x and {split}_y (or a Dataset as {split}_x)"
            )
        if isinstance(x, torch.utils.data.Dataset) and not isinstance(x, torch.Tensor):
            if y is not None:
                raise UserError(
                    f"{split}_x is a Dataset, so leave {split}_y out (the labels come from the Dataset)"
                )
            x, y = _from_dataset(x, f"{split}_x")
        if y is None:
            raise UserError(f"{split}_y is missing; give one integer label per {split} image")
        xt = _images(x, f"{split}_x", layout)
        parts[split] = (xt, _labels(y, xt.shape[0], f"{split}_y"))
    (tx, ty), (sx, sy) = parts["train"], parts["test"]
    if tx.shape[1:] != sx.shape[1:]:
        raise UserError(
            f"train images are {tuple(tx.shape[1:])} but test images are {tuple(sx.shape[1:])}; make them match"
        )
    if tx.dtype != sx.dtype:
        sx = sx.to(torch.float32) / 255.0 if sx.dtype == torch.uint8 else sx
        tx = tx.to(torch.float32) / 255.0 if tx.dtype == torch.uint8 else tx
    top = int(max(ty.max().item(), sy.max().item() if sy.numel() else 0)) + 1
    k = num_classes if num_classes is not None else (len(class_names) if class_names else top)
    if top > k:
        raise UserError(
            f"labels go up to {top - 1} but num_classes is {k}; raise num_classes or fix the labels"
        )
    names = list(class_names) if class_names is not None else [str(i) for i in range(k)]
    if len(names) != k:
        raise UserError(f"{len(names)} class_names given for {k} classes; give one name per class")
    return RawData(train_x=tx, train_y=ty, test_x=sx, test_y=sy, num_classes=k, name=name, class_names=names)


def from_arrays(
    train_x: Any,
    train_y: Any = None,
    test_x: Any = None,
    test_y: Any = None,
    *,
    val_size: int = 5000,
    subset: int | None = None,
    seed: int = 0,
    num_classes: int | None = None,
    class_names: list[str] | None = None,
    name: str = "arrays",
    layout: Layout = "auto",
) -> Splits:
    """A user's own data as Splits, cut exactly as `load` cuts CIFAR (see splits.make_splits).

    Images: uint8 (0..255) or float (in [0, 1] pixel units), N x C x H x W, or N x H x W x C
    (`layout="auto"` transposes when the last axis has 1, 3 or 4 entries and the second does not),
    or N x H x W for one channel; numpy arrays or torch tensors. Labels: integers 0..K-1. Instead of
    x and y, a torch Dataset of (image, label) pairs may be given as train_x / test_x (y left None).
    """
    raw = raw_from_arrays(
        train_x,
        train_y,
        test_x,
        test_y,
        num_classes=num_classes,
        class_names=class_names,
        name=name,
        layout=layout,
    )
    return make_splits(raw, val_size, subset, seed)


def from_npz(cfg: DataConfig) -> RawData:
    """Your own images from the .npz file named by data.root (train_x, train_y, test_x, test_y)."""
    if cfg.root is None:
        raise DataError(
            "data.name=arrays needs data.root naming an .npz file with train_x, train_y, test_x, test_y "
            "(or call bnlab.data.from_arrays from Python)"
        )
    path = Path(cfg.root).expanduser()
    if not path.is_file():
        raise DataError(
            f"{path} does not exist; set data.root to an .npz file with train_x, train_y, test_x, test_y"
        )
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as e:  # a damaged or non-npz file: report it as such
        raise DataError(
            f"{path} is not a readable .npz file ({type(e).__name__}); save it with numpy.savez"
        ) from None
    missing = [k for k in ("train_x", "train_y", "test_x", "test_y") if k not in arrays]
    if missing:
        raise DataError(
            f"{path} lacks {', '.join(missing)}; save train_x, train_y, test_x, test_y with numpy.savez"
        )
    names = [str(s) for s in arrays["class_names"]] if "class_names" in arrays else None
    return raw_from_arrays(
        arrays["train_x"],
        arrays["train_y"],
        arrays["test_x"],
        arrays["test_y"],
        class_names=names,
        name="arrays",
    )
