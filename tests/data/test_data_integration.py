"""Integration: the real files in ../shared/datasets and Debian's Fashion-MNIST (skipped when absent)."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from convforge.data import DataConfig, load_data
from convforge.data._download import mismatch
from convforge.data.builtin import cifar10, imagenette, mnist

SHARED = Path(__file__).resolve().parents[3] / "shared" / "datasets"
FASHION = Path("/usr/share/datasets/fashion-mnist")
pytestmark = pytest.mark.integration


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} not present")
    return path


def test_mnist_real_files() -> None:
    folder = _need(SHARED / "mnist")
    for r in mnist.remotes("mnist"):
        assert mismatch(folder / r.name, r) is None  # torchvision's md5s
    s = load_data(DataConfig(source="mnist", data_dir=str(folder), split=(1.0, 0.0)), progress=False)
    assert (len(s.train), len(s.val), len(s.test)) == (60000, 0, 10000)
    assert int(s.train.labels[0]) == 5 and s.train.images.shape[1:] == (1, 28, 28)
    carved = load_data(DataConfig(source="mnist", data_dir=str(folder)), progress=False)
    assert carved.info["cache"]["hit"] and (len(carved.train), len(carved.val)) == (54000, 6000)


def test_fashion_mnist_debian_package() -> None:
    _need(FASHION)
    s = load_data(DataConfig(source="fashion-mnist", split=(1.0, 0.0)), progress=False)
    assert (len(s.train), len(s.test)) == (60000, 10000) and s.classes[9] == "Ankle boot"
    assert int(s.train.labels[0]) == 9  # the official first training label: ankle boot


def _subset(archive: Path, dest: Path, per_class: int) -> Path:
    """Extract the first ``per_class`` images of each class folder (not all 50k: CI stays fast)."""
    taken: dict[str, int] = {}
    with tarfile.open(archive) as tf:
        for m in tf:
            parts = m.name.split("/")
            if m.isfile() and len(parts) == 3 and taken.get(parts[1], 0) < per_class:
                taken[parts[1]] = taken.get(parts[1], 0) + 1
                tf.extract(m, dest, filter="data") if hasattr(tarfile, "data_filter") else tf.extract(m, dest)
    return dest


def test_cifar10_jpg_subset(tmp_path: Path) -> None:
    data_dir = _subset(_need(SHARED / "cifar10-jpg-train.tar.gz"), tmp_path, 30)
    s = load_data(DataConfig(source="cifar10", data_dir=str(data_dir)), progress=False)
    assert s.classes == cifar10.CLASSES and s.train.images.shape[1:] == (3, 32, 32)
    assert len(s.train) + len(s.val) + len(s.test) == 300 and s.info["skipped"] == []
    assert all(n == 3 for n in s.info["counts"]["test"]["per_class"].values())


def test_imagenette_subset(tmp_path: Path) -> None:
    data_dir = _subset(_need(SHARED / "imagenette-128-train.tar.gz"), tmp_path, 8)
    s = load_data(DataConfig(source="imagenette", data_dir=str(data_dir)), progress=False)
    assert s.classes == list(dict.fromkeys(v for k, v in sorted(imagenette.WNID_NAMES.items()) if k != "n03888605"))
    assert s.train.images.shape[1:] == (3, 128, 128) and len(s.train) + len(s.val) + len(s.test) == 80
