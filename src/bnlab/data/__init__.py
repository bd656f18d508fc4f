"""Datasets and device-resident batches.

DATASETS: cifar10, cifar100 (standard python layout, read with a restricted unpickler), synthetic
(a cheap learnable set for tests), arrays (your own images from an .npz named by data.root).
Every factory maps a DataConfig to RawData; `load(cfg, seed)` cuts it into Splits; `DeviceData`
serves seeded, augmented batches from the training device.
"""

from __future__ import annotations

from collections.abc import Callable

from bnlab.config import DataConfig
from bnlab.data import arrays as _arrays
from bnlab.data import cifar as _cifar
from bnlab.data.arrays import from_arrays
from bnlab.data.cifar import download, locate, locate_or_download
from bnlab.data.device import DeviceData, crop_flip, draw_crop_flip
from bnlab.data.splits import RawData, Splits, load, make_splits, stratified_indices
from bnlab.data.synthetic import make_synthetic
from bnlab.errors import DataError
from bnlab.registry import Registry

DATASETS: Registry[Callable[[DataConfig], RawData]] = Registry("dataset", lister="bnlab ls datasets")
DATASETS.register("cifar10")(_cifar.cifar10)
DATASETS.register("cifar100")(_cifar.cifar100)


@DATASETS.register("synthetic")
def synthetic(cfg: DataConfig) -> RawData:
    """Learnable class-dependent 3x32x32 images, 10 classes; sizes data.synthetic_train / _test (tests)."""
    return make_synthetic(cfg.synthetic_train, cfg.synthetic_test, seed=0)


DATASETS.register("arrays")(_arrays.from_npz)

__all__ = [
    "DATASETS",
    "DataError",
    "DeviceData",
    "RawData",
    "Splits",
    "crop_flip",
    "download",
    "draw_crop_flip",
    "from_arrays",
    "load",
    "locate",
    "locate_or_download",
    "make_splits",
    "make_synthetic",
    "stratified_indices",
]
