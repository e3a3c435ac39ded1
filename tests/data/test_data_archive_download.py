"""Safe extraction, checksums, downloads (local file:// and monkeypatched urlopen only) and offline errors."""

from __future__ import annotations

import concurrent.futures
import hashlib
import io
import stat
import tarfile
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest
from data_helpers import make_classes

from convforge.data import DataConfig, _archive, load_data
from convforge.data import _download as dl
from convforge.data._archive import extract_once, safe_extract
from convforge.errors import DataError

_KINDS = (("images", 3), ("labels", 1))
MNIST_FILES = ", ".join(f"{s}-{k}-idx{d}-ubyte.gz" for s in ("train", "t10k") for k, d in _KINDS)


def _tar(path: Path, members: list[tarfile.TarInfo]) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for m in members:
            tf.addfile(m, io.BytesIO(b"x" * m.size) if m.isfile() else None)
    return path


def _info(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    m = tarfile.TarInfo(name)
    m.type, m.linkname, m.size = kind, link, 1 if kind == tarfile.REGTYPE else 0
    return m


@pytest.mark.parametrize(
    "member, match",
    [(_info("../evil"), r"'\.\.'"), (_info("a/../../evil"), r"'\.\.'"), (_info("/tmp/evil"), "absolute path"),
     (_info("link", tarfile.SYMTYPE, "/etc/passwd"), "is a link"),
     (_info("hard", tarfile.LNKTYPE, "../x"), "is a link"), (_info("dev", tarfile.CHRTYPE), "device or special")],
)  # fmt: skip
def test_tar_refuses_unsafe_members(tmp_path: Path, member: tarfile.TarInfo, match: str) -> None:
    archive = _tar(tmp_path / "bad.tar.gz", [_info("ok.txt"), member])
    with pytest.raises(DataError, match=f"unsafe archive .*{match}"):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "evil").exists() and not (tmp_path / "out" / "ok.txt").exists()  # nothing extracted


@pytest.mark.parametrize("name, match", [("../evil", r"'\.\.'"), ("/abs/evil", "absolute path"), ("link", "is a link")])
def test_zip_refuses_unsafe_members(tmp_path: Path, name: str, match: str) -> None:
    archive = tmp_path / "bad.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ok.txt", "fine")
        info = zipfile.ZipInfo(name)
        if name == "link":
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(DataError, match=f"unsafe archive .*{match}"):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "evil").exists()


def test_archive_source_loads_and_caches(tmp_path: Path) -> None:
    root = make_classes(tmp_path / "set", {"cats": 4, "dogs": 4})
    archive = tmp_path / "set.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(root, arcname="set")
    first = load_data(DataConfig(source=str(archive)), progress=False)
    assert first.classes == ["cats", "dogs"] and first.info["archive"] == str(archive.resolve())
    assert load_data(DataConfig(source=str(archive)), progress=False).info["cache"]["hit"] is True


def test_concurrent_extract_once_extracts_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The ranks of a multi-GPU run extract the same archive at once: one extracts, the others wait for it
    (before the lock, one rank's rmtree of the finished folder pulled files from under another's decoding)."""
    archive = _tar(tmp_path / "set.tar.gz", [_info(f"train/c{i % 2}/{i}.jpg") for i in range(40)])
    calls, real = [], _archive.safe_extract

    def slow_extract(src: Path, dest: Path) -> None:
        calls.append(dest)
        time.sleep(0.2)  # the others arrive while this one is still extracting
        real(src, dest)

    monkeypatch.setattr(_archive, "safe_extract", slow_extract)
    dest = tmp_path / "cache" / "set"
    with concurrent.futures.ThreadPoolExecutor(4) as pool:  # flock excludes other open files in one process too
        done = list(pool.map(lambda _: extract_once(archive, dest), range(4)))
    assert done == [dest] * 4 and len(calls) == 1
    assert sorted(p.name for p in dest.rglob("*.jpg")) == sorted(f"{i}.jpg" for i in range(40))
    assert [p.name for p in dest.parent.iterdir() if p.name.startswith(".set.") and p.is_dir()] == []


def test_offline_error_names_files_and_places(tmp_path: Path, _isolated_cache: Path) -> None:
    with pytest.raises(DataError) as e:
        load_data(DataConfig(source="mnist", data_dir=str(tmp_path / "none")), progress=False)
    msg = str(e.value)
    assert msg.startswith("mnist not found and download failed (OSError: network disabled in tests)")
    assert f"put {MNIST_FILES} in {_isolated_cache / 'mnist'} or pass --data-dir DIR" in msg
    with pytest.raises(DataError, match="mnist not found and download disabled: put train-images"):
        load_data(DataConfig(source="mnist", download=False), progress=False)
    with pytest.raises(DataError, match="cifar10 not found and download failed .*cifar-10-python.tar.gz"):
        load_data(DataConfig(source="cifar10"), progress=False)


def test_local_checksum_mismatch(tmp_path: Path) -> None:
    for name in MNIST_FILES.split(", "):
        (tmp_path / name).write_bytes(b"not the real file")
    with pytest.raises(DataError, match=r"checksum mismatch for .*train-images-idx3-ubyte.gz: md5 .* expected f68b3c"):
        load_data(DataConfig(source="mnist", data_dir=str(tmp_path)), progress=False)


def test_download_file_url_verified_and_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dl, "urlopen", urllib.request.urlopen)
    src = tmp_path / "remote.bin"
    src.write_bytes(b"payload" * 1000)
    md5 = hashlib.md5(src.read_bytes()).hexdigest()
    dest = tmp_path / "cache" / "x" / "remote.bin"
    dl.download(dl.Remote("remote.bin", (src.as_uri(),), md5=md5), dest, progress=False)
    assert dest.read_bytes() == src.read_bytes()
    bad = tmp_path / "cache" / "x" / "bad.bin"
    with pytest.raises(DataError, match="checksum mismatch for file://.*remote.bin: sha256"):
        dl.download(dl.Remote("bad.bin", (src.as_uri(),), sha256="0" * 64), bad, progress=False)
    assert not bad.exists() and not list(bad.parent.glob("*.part"))  # no partial file left


def test_download_retries_once_per_mirror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def failing(url: str, timeout: float) -> None:
        calls.append(url)
        raise OSError("boom")

    monkeypatch.setattr(dl, "urlopen", failing)
    with pytest.raises(DataError, match="boom"):
        dl.download(dl.Remote("f", ("http://a/f", "http://b/f")), tmp_path / "f", progress=False)
    assert calls == ["http://a/f", "http://a/f", "http://b/f", "http://b/f"]
