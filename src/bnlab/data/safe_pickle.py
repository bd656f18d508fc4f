"""A restricted unpickler for dataset files, which are untrusted input.

A pickle can name any importable callable and call it while loading (`os.system` included). The
CIFAR files only need numpy to rebuild arrays, so exactly those globals are allowed and any other
global is refused before it is looked up, let alone called. Strings are decoded as latin1 so that
Python-2 pickles (the official files) load: numpy turns latin1 text back into the raw array bytes.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

# (module, name) pairs numpy's ndarray/dtype pickles refer to; numpy < 2 writes `numpy.core`,
# numpy >= 2 writes `numpy._core`; protocol-2 pickles of bytes (Python 3) go through _codecs.encode.
ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }
)


class ForbiddenGlobal(pickle.UnpicklingError):
    """The pickle asked for a global outside ALLOWED_GLOBALS."""

    def __init__(self, module: str, name: str) -> None:
        super().__init__(f"forbidden global {module}.{name}")
        self.module = module
        self.name = name


class RestrictedUnpickler(pickle.Unpickler):
    """pickle.Unpickler that resolves only ALLOWED_GLOBALS and has no persistent ids."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in ALLOWED_GLOBALS:
            raise ForbiddenGlobal(module, name)
        if module == "_codecs":
            import _codecs

            return _codecs.encode
        import numpy as np

        if name == "_reconstruct":
            return _reconstruct_fn()  # the installed numpy's, whichever spelling the file used
        return np.ndarray if name == "ndarray" else np.dtype

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("persistent ids are not allowed in dataset files")


def _reconstruct_fn() -> Any:
    try:
        from numpy._core.multiarray import _reconstruct  # numpy >= 2
    except ImportError:  # numpy 1.x
        from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]
    return _reconstruct


def loads(data: bytes) -> Any:
    """Unpickle `data` allowing only numpy's array globals; raises pickle.UnpicklingError otherwise."""
    return RestrictedUnpickler(io.BytesIO(data), encoding="latin1").load()


def load(path: str | Path) -> Any:
    """Unpickle the file at `path` with RestrictedUnpickler (see `loads`)."""
    with open(path, "rb") as f:
        return RestrictedUnpickler(f, encoding="latin1").load()
