"""The restricted unpickler: both pickle flavours of numpy arrays load; anything else is refused unrun."""

from __future__ import annotations

import os
import pickle
import subprocess

import cifar_fakes
import numpy as np
import pytest

from bnlab.data import safe_pickle


def _batch() -> dict:
    rng = np.random.default_rng(1)
    return {"data": rng.integers(0, 256, (7, 3072), dtype=np.uint8), "labels": [1, 2, 3, 4, 5, 6, 7]}


def test_allowed_globals_are_exactly_numpys_array_rebuilders():
    assert safe_pickle.ALLOWED_GLOBALS == {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }


def test_python2_pickle_with_8bit_strings_and_numpy_core_loads():
    obj = _batch()
    blob = cifar_fakes.dumps(obj, "py2")
    assert b"numpy.core.multiarray" in blob and b"numpy._core" not in blob
    assert pickle.BINUNICODE not in blob[:12]  # keys are 8-bit strings, as Python 2 wrote them
    out = safe_pickle.loads(blob)
    assert set(out) == {"data", "labels"}
    assert out["data"].dtype == np.uint8 and np.array_equal(out["data"], obj["data"])
    assert out["labels"] == obj["labels"]


def test_bytes_keys_and_numpy_core_load():
    obj = _batch()
    blob = cifar_fakes.dumps(obj, "bytes")
    assert b"numpy.core.multiarray" in blob
    out = safe_pickle.loads(blob)
    assert set(out) == {b"data", b"labels"}
    assert np.array_equal(out[b"data"], obj["data"])


@pytest.mark.parametrize("protocol", [2, 3, 4])
def test_python3_pickles_load(protocol):
    obj = _batch()
    blob = cifar_fakes.dumps(obj, "py3", protocol)
    if protocol == 2 and np.__version__ >= "2":
        assert b"numpy._core.multiarray" in blob
    out = safe_pickle.loads(blob)
    assert np.array_equal(out["data"], obj["data"]) and out["labels"] == obj["labels"]


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_code_running_pickle_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "PWNED"
    blob = pickle.dumps({"data": _Evil(marker), "labels": [0]}, protocol=2)
    # The unguarded loader would run it (the test's premise): check in a child process.
    subprocess.run(["python", "-c", f"import pickle; pickle.loads({blob!r})"], check=False)
    assert marker.exists(), "premise: plain pickle.loads runs this payload"
    marker.unlink()
    with pytest.raises(safe_pickle.ForbiddenGlobal) as e:
        safe_pickle.loads(blob)
    assert e.value.name == "system"
    assert not marker.exists()


@pytest.mark.parametrize(
    "module,name",
    [("builtins", "eval"), ("subprocess", "Popen"), ("numpy", "load"), ("numpy.core.multiarray", "scalar")],
)
def test_other_globals_are_refused(module, name):
    blob = b"\x80\x02c" + f"{module}\n{name}\n".encode() + b"."
    with pytest.raises(safe_pickle.ForbiddenGlobal):
        safe_pickle.loads(blob)


def test_persistent_ids_are_refused():
    blob = b"\x80\x02X\x01\x00\x00\x00xQ."  # BINPERSID on the string 'x'
    with pytest.raises(pickle.UnpicklingError):
        safe_pickle.loads(blob)
