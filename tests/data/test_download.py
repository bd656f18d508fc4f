"""download(): md5 check before extraction, safe extraction, atomic placement; the CLI subcommand."""

from __future__ import annotations

import argparse
import hashlib
import io
import tarfile
from pathlib import Path

import cifar_fakes
import pytest

from bnlab.cli import data as cli_data
from bnlab.data import cifar, download
from bnlab.errors import DataError


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    monkeypatch.delenv("BNLAB_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def _archive(tmp_path: Path, extra=None) -> tuple[str, str]:
    src = tmp_path / "src"
    cifar_fakes.fake_cifar10(src, "py2")
    path = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        tar.add(src / "cifar-10-batches-py", arcname="cifar-10-batches-py")
        if extra is not None:
            extra(tar)
    return path.as_uri(), hashlib.md5(path.read_bytes()).hexdigest()


def test_download_checks_md5_extracts_and_loads(tmp_path):
    url, md5 = _archive(tmp_path)
    seen = []
    out = download("cifar10", tmp_path / "data", url=url, md5=md5, progress=lambda d, t: seen.append((d, t)))
    assert out == tmp_path / "data" / "cifar-10-batches-py"
    assert cifar.read("cifar10", tmp_path / "data").train_x.shape == (200, 3, 32, 32)
    assert seen and seen[-1][0] > 0
    assert [p.name for p in (tmp_path / "data").iterdir()] == ["cifar-10-batches-py"]  # no temp files left
    # a valid copy is kept: the (now unreachable) url is not even fetched
    assert download("cifar10", tmp_path / "data", url=(tmp_path / "gone.tar.gz").as_uri(), md5=md5) == out


def test_wrong_md5_extracts_nothing(tmp_path):
    url, _ = _archive(tmp_path)
    with pytest.raises(DataError, match="has md5 .* not 0{32}"):
        download("cifar10", tmp_path / "data", url=url, md5="0" * 32)
    assert not (tmp_path / "data" / "cifar-10-batches-py").exists()
    assert list((tmp_path / "data").iterdir()) == []


def _add_bytes(name: str, data: bytes = b"x"):
    def add(tar):
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))

    return add


def _add_symlink(tar):
    info = tarfile.TarInfo("cifar-10-batches-py/link")
    info.type = tarfile.SYMTYPE
    info.linkname = "/etc/passwd"
    tar.addfile(info)


@pytest.mark.parametrize(
    "extra",
    [
        _add_bytes("cifar-10-batches-py/../../escaped"),
        _add_bytes("/tmp/bnlab-absolute-escape"),
        _add_bytes("other-folder/file"),
        _add_symlink,
    ],
)
def test_unsafe_archive_members_are_refused(tmp_path, extra):
    url, md5 = _archive(tmp_path, extra)
    with pytest.raises(DataError, match="unexpected entry"):
        download("cifar10", tmp_path / "data", url=url, md5=md5)
    assert not (tmp_path / "escaped").exists() and not (tmp_path / "data" / "cifar-10-batches-py").exists()
    assert not Path("/tmp/bnlab-absolute-escape").exists()


def test_broken_copy_is_replaced_and_force_refetches(tmp_path):
    url, md5 = _archive(tmp_path)
    target = tmp_path / "data" / "cifar-10-batches-py"
    target.mkdir(parents=True)
    (target / "test_batch").write_bytes(b"garbage")
    download("cifar10", tmp_path / "data", url=url, md5=md5)
    assert cifar.read("cifar10", tmp_path / "data").test_x.shape[0] == 30
    (target / "marker").write_text("old")
    download("cifar10", tmp_path / "data", url=url, md5=md5, force=True)
    assert not (target / "marker").exists()


def test_unreachable_url_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="failed"):
        download("cifar10", tmp_path / "data", url=(tmp_path / "nope.tar.gz").as_uri(), md5="0" * 32)


def test_default_root_is_env_then_cache(tmp_path, monkeypatch):
    assert cifar.download_root() == tmp_path / "home" / ".cache" / "bnlab"
    monkeypatch.setenv("BNLAB_DATA", str(tmp_path / "env"))
    assert cifar.download_root() == tmp_path / "env"
    assert cifar.download_root(tmp_path / "x") == tmp_path / "x"


def test_official_sources():
    assert cifar.SPECS["cifar10"].url == "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
    assert cifar.SPECS["cifar10"].md5 == "c58f30108f718f92721af3b95e74349a"
    assert cifar.SPECS["cifar100"].url == "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
    assert cifar.SPECS["cifar100"].md5 == "eb9058c3a382ffc7106e4002c42a8d85"


def test_cli_subcommand(tmp_path, capsys, monkeypatch):
    parser = argparse.ArgumentParser(prog="bnlab")
    cli_data.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["data", "download", "cifar10", "--root", str(tmp_path / "d")])
    assert args.name == "cifar10" and args.root == str(tmp_path / "d") and not args.force
    url, md5 = _archive(tmp_path)
    spec = cifar.SPECS["cifar10"]
    monkeypatch.setitem(cifar.SPECS, "cifar10", cifar.CifarSpec(**{**spec.__dict__, "url": url, "md5": md5}))
    assert cli_data.run(args) == 0
    out = capsys.readouterr()
    assert out.out.strip().splitlines()[-1] == str(tmp_path / "d" / "cifar-10-batches-py")
    assert "MiB" in out.err
    with pytest.raises(SystemExit):
        parser.parse_args(["data", "download", "imagenet"])


def test_offline_never_downloads_and_names_the_fix(tmp_path, monkeypatch):
    from bnlab.data import locate_or_download
    from bnlab.errors import UserError

    monkeypatch.delenv("BNLAB_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("BNLAB_OFFLINE", "1")
    with pytest.raises(UserError, match="BNLAB_OFFLINE.*data.root"):
        locate_or_download("cifar10", tmp_path / "nowhere")
    assert not (tmp_path / "home").exists()  # nothing made: no cache folder, no partial archive
