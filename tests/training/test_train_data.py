"""bnlab.train without the data: the same lookup and download as `bnlab reproduce`, or one clear sentence."""

from pathlib import Path

import pytest

import bnlab
import bnlab.data
import bnlab.data.cifar
import bnlab.training
from bnlab.data import DataError
from bnlab.errors import UserError


def _missing(name, root=None):
    raise DataError(f"{name} not found")


@pytest.fixture(autouse=True)
def _online(monkeypatch):
    """These tests replace `download` itself, so the suite's BNLAB_OFFLINE (no real downloads) is lifted."""
    monkeypatch.delenv("BNLAB_OFFLINE", raising=False)


def test_train_downloads_missing_cifar_then_runs(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(bnlab.data.cifar, "locate", _missing)
    monkeypatch.setattr(
        bnlab.data.cifar, "download", lambda name, root=None: calls.append((name, root)) or tmp_path
    )
    monkeypatch.setattr(bnlab.training, "run", lambda cfg, run_dir, progress=True: None)
    out = bnlab.train({"data": {"name": "cifar10", "root": str(tmp_path)}}, tmp_path / "runs", progress=False)
    assert calls == [("cifar10", str(tmp_path))] and Path(out).parent == tmp_path / "runs"


def test_train_without_network_is_one_sentence(monkeypatch, tmp_path):
    def offline(name, root=None):
        raise OSError("no network")

    monkeypatch.setattr(bnlab.data.cifar, "locate", _missing)
    monkeypatch.setattr(bnlab.data.cifar, "download", offline)
    with pytest.raises(
        UserError, match=r"cifar10 was not found and could not be downloaded \(OSError\); point data.root"
    ):
        bnlab.train({"data": {"name": "cifar10"}}, tmp_path / "runs", progress=False)
    assert not (tmp_path / "runs").exists()  # nothing half-written
