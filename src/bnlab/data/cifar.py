"""CIFAR-10 / CIFAR-100 in the standard python layout: locate, read safely, validate, download.

Layout (as in the official archives): `cifar-10-batches-py/` with `data_batch_1..5`, `test_batch`,
`batches.meta`; `cifar-100-python/` with `train`, `test`, `meta`. Each batch is a pickled dict with
`data` (N x 3072 uint8: R, G, B planes, row-major) and `labels` (`fine_labels` for CIFAR-100).
Files are checked by structure (keys, shapes, dtype, label range), not by checksum, so locally
converted copies are accepted; only a downloaded archive is checked against its md5.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tarfile
import tempfile
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import torch

from bnlab.config import DataConfig
from bnlab.data import safe_pickle
from bnlab.data.splits import RawData
from bnlab.errors import DataError, UserError


@dataclass(frozen=True)
class CifarSpec:
    name: str
    folder: str  # the folder the archive unpacks to
    train_files: tuple[str, ...]
    test_file: str
    meta_file: str
    label_key: str
    names_key: str
    num_classes: int
    url: str
    md5: str  # of the archive


SPECS: dict[str, CifarSpec] = {
    "cifar10": CifarSpec(
        name="cifar10",
        folder="cifar-10-batches-py",
        train_files=tuple(f"data_batch_{i}" for i in range(1, 6)),
        test_file="test_batch",
        meta_file="batches.meta",
        label_key="labels",
        names_key="label_names",
        num_classes=10,
        url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        md5="c58f30108f718f92721af3b95e74349a",
    ),
    "cifar100": CifarSpec(
        name="cifar100",
        folder="cifar-100-python",
        train_files=("train",),
        test_file="test",
        meta_file="meta",
        label_key="fine_labels",
        names_key="fine_label_names",
        num_classes=100,
        url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        md5="eb9058c3a382ffc7106e4002c42a8d85",
    ),
}


def _spec(name: str) -> CifarSpec:
    if name not in SPECS:
        raise DataError(f"unknown downloadable dataset {name!r}; choose one of: {', '.join(SPECS)}")
    return SPECS[name]


def default_roots(root: str | os.PathLike[str] | None = None) -> list[Path]:
    """The folders searched, in order: `root` (data.root), $BNLAB_DATA, ~/.cache/bnlab."""
    out = []
    if root is not None:
        out.append(Path(root).expanduser())
    env = os.environ.get("BNLAB_DATA")
    if env:
        out.append(Path(env).expanduser())
    out.append(Path("~/.cache/bnlab").expanduser())
    return out


def _dataset_dir(candidate: Path, spec: CifarSpec) -> Path | None:
    if (candidate / spec.folder).is_dir():
        return candidate / spec.folder
    if candidate.is_dir() and (candidate.name == spec.folder or (candidate / spec.test_file).is_file()):
        return candidate
    return None


def locate(name: str, root: str | os.PathLike[str] | None = None) -> Path:
    """The dataset folder (e.g. .../cifar-10-batches-py) found first along default_roots(root)."""
    spec = _spec(name)
    searched = default_roots(root)
    for candidate in searched:
        found = _dataset_dir(candidate, spec)
        if found is not None:
            return found
    where = ", ".join(str(p) for p in searched)
    raise DataError(
        f"{spec.name} not found ({spec.folder}/ is in none of: {where}); "
        f"run `bnlab data download {spec.name}` or set data.root to the folder that holds {spec.folder}/"
    )


def _fix(spec: CifarSpec) -> str:
    return f"run `bnlab data download {spec.name} --force` or set data.root to a good copy"


def _read_dict(path: Path, spec: CifarSpec) -> dict[str, Any]:
    if not path.is_file():
        raise DataError(f"{path} is missing; {_fix(spec)}")
    try:
        obj = safe_pickle.load(path)
    except safe_pickle.ForbiddenGlobal as e:
        raise DataError(
            f"{path} is not a plain dataset pickle (it asks to call {e.module}.{e.name}) and was refused "
            f"without running it; delete it and {_fix(spec)}"
        ) from None
    except MemoryError:
        raise DataError(f"{path} is corrupt (it asks for an impossibly large array); {_fix(spec)}") from None
    except Exception as e:  # any unpickling failure of an untrusted file means "corrupt"
        raise DataError(f"{path} is corrupt ({type(e).__name__}: {e}); {_fix(spec)}") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path} is corrupt (it holds a {type(obj).__name__}, not a dict); {_fix(spec)}")
    # Python-2 pickles read with encoding='bytes' style keys may arrive as bytes: use str keys
    return {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in obj.items()}


def _read_batch(path: Path, spec: CifarSpec) -> tuple[np.ndarray, np.ndarray]:
    d = _read_dict(path, spec)
    for key in ("data", spec.label_key):
        if key not in d:
            raise DataError(f"{path} is corrupt (no {key!r} entry); {_fix(spec)}")
    data, labels = d["data"], d[spec.label_key]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        what = (
            f"{data.dtype} array of shape {data.shape}"
            if isinstance(data, np.ndarray)
            else type(data).__name__
        )
        raise DataError(f"{path} is corrupt ('data' is a {what}, not N x 3072 uint8); {_fix(spec)}")
    try:
        y = np.asarray(labels)
    except Exception:
        y = np.asarray([], dtype=object)
    if y.ndim != 1 or y.shape[0] != data.shape[0] or not np.issubdtype(y.dtype, np.integer):
        raise DataError(
            f"{path} is corrupt ({spec.label_key!r} is not {data.shape[0]} integer labels); {_fix(spec)}"
        )
    if y.size and (y.min() < 0 or y.max() >= spec.num_classes):
        raise DataError(
            f"{path} is corrupt (labels outside 0..{spec.num_classes - 1}, so it is not {spec.name}); {_fix(spec)}"
        )
    if data.shape[0] == 0:
        raise DataError(f"{path} is corrupt (it holds no images); {_fix(spec)}")
    return data, y.astype(np.int64)


def _read_names(path: Path, spec: CifarSpec) -> list[str]:
    d = _read_dict(path, spec)
    names = d.get(spec.names_key)
    if not isinstance(names, list | tuple) or len(names) != spec.num_classes:
        raise DataError(f"{path} is corrupt (no list of {spec.num_classes} {spec.names_key!r}); {_fix(spec)}")
    out = []
    for n in names:
        if isinstance(n, bytes):
            n = n.decode("latin1")
        if not isinstance(n, str):
            raise DataError(f"{path} is corrupt ({spec.names_key!r} holds a non-string); {_fix(spec)}")
        out.append(n)
    return out


def _to_nchw(data: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(data.reshape(-1, 3, 32, 32)))  # R, G, B planes, row-major


_CACHE: dict[tuple, RawData] = {}  # one dataset kept in memory: a sweep reads the files once


def read(name: str, root: str | os.PathLike[str] | None = None) -> RawData:
    """Read and validate CIFAR `name` from the folder locate(name, root) finds.

    The result is cached in-process, keyed by the folder and its files' sizes and mtimes, so the runs of
    a local sweep share one read (callers never modify RawData's tensors: splits index into copies)."""
    spec = _spec(name)
    folder = locate(name, root)
    key = (
        name,
        str(folder.resolve()),
        *(_stamp(folder / f) for f in (spec.meta_file, *spec.train_files, spec.test_file)),
    )
    if key not in _CACHE:
        _CACHE.clear()
        _CACHE[key] = _read_folder(folder, spec)
    return _CACHE[key]


def _stamp(path: Path) -> tuple[int, int]:
    try:
        st = path.stat()
    except OSError:
        return (-1, -1)
    return (st.st_size, st.st_mtime_ns)


def _read_folder(folder: Path, spec: CifarSpec) -> RawData:
    names = _read_names(folder / spec.meta_file, spec)
    parts = [_read_batch(folder / f, spec) for f in spec.train_files]
    test_x, test_y = _read_batch(folder / spec.test_file, spec)
    train_x = np.concatenate([p[0] for p in parts])
    train_y = np.concatenate([p[1] for p in parts])
    return RawData(
        train_x=_to_nchw(train_x),
        train_y=torch.from_numpy(train_y),
        test_x=_to_nchw(test_x),
        test_y=torch.from_numpy(test_y),
        num_classes=spec.num_classes,
        name=spec.name,
        class_names=names,
    )


def cifar10(cfg: DataConfig) -> RawData:
    """CIFAR-10 (50k train / 10k test, 10 classes) from data.root, $BNLAB_DATA or ~/.cache/bnlab."""
    return read("cifar10", cfg.root)


def cifar100(cfg: DataConfig) -> RawData:
    """CIFAR-100 (50k train / 10k test, 100 fine classes) from data.root, $BNLAB_DATA or ~/.cache/bnlab."""
    return read("cifar100", cfg.root)


# ---------------------------------------------------------------------------------------- download


def download_root(root: str | os.PathLike[str] | None = None) -> Path:
    """Where `download` puts data: `root`, else $BNLAB_DATA, else ~/.cache/bnlab."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get("BNLAB_DATA")
    return Path(env).expanduser() if env else Path("~/.cache/bnlab").expanduser()


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _check_members(tar: tarfile.TarFile, spec: CifarSpec, archive: str) -> list[tarfile.TarInfo]:
    """Only plain files and folders inside spec.folder/: no links, devices, absolute paths or '..'."""
    members = tar.getmembers()
    for m in members:
        p = PurePosixPath(m.name)
        unsafe = (
            p.is_absolute()
            or ".." in p.parts
            or not (m.isfile() or m.isdir())
            or not p.parts
            or p.parts[0] != spec.folder
        )
        if unsafe:
            raise DataError(
                f"{archive} holds an unexpected entry {m.name!r} and was not extracted; "
                f"delete it and run `bnlab data download {spec.name}` again"
            )
    return members


def download(
    name: str,
    root: str | os.PathLike[str] | None = None,
    *,
    force: bool = False,
    url: str | None = None,
    md5: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Download CIFAR `name` into `root` (default: $BNLAB_DATA or ~/.cache/bnlab) and return its folder.

    The archive's md5 is checked before anything is extracted; extraction refuses links, absolute
    paths and '..' and happens in a temporary folder that is renamed into place only when complete.
    An existing valid copy is kept unless `force`. `progress(bytes_done, bytes_total)` is called while
    downloading (total 0 if unknown). `url`/`md5` override the official ones (mirrors, tests).
    """
    spec = _spec(name)
    dest_root = download_root(root)
    target = dest_root / spec.folder
    if target.is_dir() and not force:
        try:
            read(name, dest_root)
            return target
        except DataError:
            pass  # present but broken: fetch a fresh copy
    try:
        dest_root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(
            f"cannot create {dest_root} ({e.strerror}); pass a writable folder with --root"
        ) from None
    url = url or spec.url
    md5 = md5 or spec.md5
    with tempfile.TemporaryDirectory(prefix=".bnlab-download-", dir=dest_root) as tmp:
        archive = Path(tmp) / Path(url).name
        try:
            with urllib.request.urlopen(url, timeout=60) as resp, open(archive, "wb") as out:
                total = int(resp.headers.get("Content-Length") or 0)
                done = 0
                for block in iter(lambda: resp.read(1 << 20), b""):
                    out.write(block)
                    done += len(block)
                    if progress is not None:
                        progress(done, total)
        except OSError as e:
            raise DataError(
                f"downloading {url} failed ({e}); check the network or fetch the archive by hand and set data.root"
            ) from None
        got = _md5(archive)
        if got != md5:
            raise DataError(
                f"the archive downloaded from {url} has md5 {got}, not {md5}; "
                f"run `bnlab data download {spec.name}` again or fetch it by hand"
            )
        unpack = Path(tmp) / "unpack"
        unpack.mkdir()
        try:
            with tarfile.open(archive, "r:*") as tar:
                members = _check_members(tar, spec, url)
                if hasattr(tarfile, "data_filter"):
                    tar.extractall(unpack, members=members, filter="data")
                else:  # pragma: no cover - Python without PEP 706 filters; members already checked
                    tar.extractall(unpack, members=members)
        except (tarfile.TarError, OSError, EOFError) as e:
            raise DataError(
                f"the archive from {url} cannot be extracted ({e}); run `bnlab data download {spec.name}` again"
            ) from None
        if not (unpack / spec.folder).is_dir():
            raise DataError(f"the archive from {url} has no {spec.folder}/ folder; check the url")
        read(name, unpack)  # validate before it replaces anything
        if target.exists():
            shutil.rmtree(target)
        os.replace(unpack / spec.folder, target)
    return target


def locate_or_download(name: str, root: str | os.PathLike[str] | None = None) -> Path:
    """The CIFAR `name` copy under `root` / $BNLAB_DATA / ~/.cache/bnlab, downloaded once (md5-checked) when
    missing (never with $BNLAB_OFFLINE set); where that fails (no network, disk full) a UserError says how to
    point data.root at a copy."""
    try:
        return locate(name, root)
    except DataError:
        if os.environ.get("BNLAB_OFFLINE", "") not in ("", "0"):
            raise UserError(
                f"{name} was not found and BNLAB_OFFLINE is set, so it is not downloaded; {_point_at_copy(name)}"
            ) from None
        sys.stderr.write(f"bnlab: {name} not found; downloading it\n")
    try:
        return download(name, root)
    except Exception as e:  # noqa: BLE001 - no network, disk full, ...: one sentence for the user
        raise UserError(
            f"{name} was not found and could not be downloaded ({type(e).__name__}); {_point_at_copy(name)}"
        ) from None


def _point_at_copy(name: str) -> str:
    """How to point bnlab at a local copy (the end of both errors of `locate_or_download`)."""
    return (
        f"point data.root (--set data.root=DIR) at a folder holding {_spec(name).folder}/ "
        "(offline: python ../shared/data/make_cifar10.py DIR makes one)"
    )
