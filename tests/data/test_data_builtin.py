"""Built-in sets on tiny files written in the exact official formats (never the network)."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from data_helpers import make_classes, py2_pickle, save

from convforge.data import SOURCES, DataConfig, load_data
from convforge.data.builtin import cifar10, mnist
from convforge.data.builtin._cifar_format import SafeUnpickler, read_binary_batch
from convforge.data.builtin._idx import read_idx, write_idx
from convforge.errors import ConfigError, DataError

RNG = np.random.default_rng(0)


def test_registry_names() -> None:
    assert SOURCES.names() == ["cats-vs-dogs", "cifar10", "digits", "fashion-mnist", "imagenette", "mnist"]
    with pytest.raises(ConfigError, match="did you mean 'mnist'"):
        load_data(DataConfig(source="mnits"), progress=False)


def test_digits_exact_values() -> None:
    from sklearn.datasets import load_digits

    s = load_data(DataConfig(source="digits", split=(1.0, 0.0)), progress=False)
    raw = load_digits()
    assert s.train.images.shape == (1797, 1, 8, 8) and s.classes == [str(i) for i in range(10)]
    want = np.floor(raw.images * 255 / 16 + 0.5).astype(np.uint8)
    assert np.array_equal(s.train.images[:, 0].numpy(), want) and s.train.images.max() == 255
    assert torch.equal(s.train.labels, torch.from_numpy(raw.target).long())
    big = load_data(DataConfig(source="digits", image_size=(16, 16), channels=3), progress=False)
    assert big.train.images.shape[1:] == (3, 16, 16) and len(big.train) + len(big.val) + len(big.test) == 1797


def test_digits_read_without_sklearn_datasets_equal_load_digits(monkeypatch) -> None:
    import importlib.util

    from convforge.data.builtin import digits

    values, labels = digits._bundled()  # the bundled CSV, read directly
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)  # no file found: load_digits
    values_sk, labels_sk = digits._bundled()
    assert values.shape == (1797, 64) and np.array_equal(values, values_sk) and np.array_equal(labels, labels_sk)


def test_idx_round_trip_and_errors() -> None:
    a = RNG.integers(0, 255, (3, 4, 5), dtype=np.uint8)
    assert np.array_equal(read_idx(write_idx(a)), a)
    assert write_idx(a)[:4] == b"\x00\x00\x08\x03" and write_idx(a)[4:8] == (3).to_bytes(4, "big")
    with pytest.raises(ValueError, match="bad magic"):
        read_idx(b"\x01\x02\x08\x03")
    with pytest.raises(ValueError, match="truncated"):
        read_idx(write_idx(a)[:-1])


def _mnist_files(folder: Path, n_train: int = 30, n_test: int = 10, gz: bool = True) -> dict[str, bytes]:
    """Tiny MNIST-format files: labels cycle 0..9, pixel (0, 0) of image i is i."""
    folder.mkdir(parents=True, exist_ok=True)
    raw = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = RNG.integers(0, 255, (n, 28, 28), dtype=np.uint8)
        images[:, 0, 0] = np.arange(n)
        raw[f"{prefix}-images-idx3-ubyte"] = write_idx(images)
        raw[f"{prefix}-labels-idx1-ubyte"] = write_idx((np.arange(n) % 10).astype(np.uint8))
    for name, data in raw.items():
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(data, mtime=0))
        else:
            (folder / name).write_bytes(data)
    return raw


def _md5(b: bytes) -> str:
    return hashlib.md5(b).hexdigest()


def test_mnist_from_torchvision_layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raw_dir = tmp_path / "MNIST" / "raw"
    _mnist_files(raw_dir, n_train=100)
    order = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    monkeypatch.setitem(mnist._MD5, "mnist", tuple(_md5((raw_dir / f"{n}.gz").read_bytes()) for n in order))
    s = load_data(DataConfig(source="mnist", data_dir=str(tmp_path), split=(0.8, 0.2, 0.0)), progress=False)
    assert [len(s.train), len(s.val), len(s.test)] == [80, 20, 10]  # official test; val = 20% of train
    assert s.train.images.shape[1:] == (1, 28, 28)
    assert s.test.images[:, 0, 0, 0].tolist() == list(range(10)) and s.test.labels.tolist() == list(range(10))
    assert s.info["counts"]["val"]["per_class"] == {str(i): 2 for i in range(10)}  # stratified
    assert s.info["files"][0].endswith("MNIST/raw/train-images-idx3-ubyte.gz")


def test_mnist_uncompressed_and_resized(tmp_path: Path) -> None:
    _mnist_files(tmp_path / "mnist", gz=False)  # no known md5 for uncompressed MNIST: structure checked
    s = load_data(DataConfig(source="mnist", data_dir=str(tmp_path), image_size=(14, 14), channels=3), progress=False)
    assert s.train.images.shape[1:] == (3, 14, 14) and len(s.test) == 10


def test_fashion_accepts_recompressed_by_uncompressed_md5(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = _mnist_files(tmp_path / "fashion-mnist")
    order = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    monkeypatch.setitem(mnist._RAW_MD5, "fashion-mnist", tuple(_md5(raw[n]) for n in order))  # .gz md5s do not match
    s = load_data(DataConfig(source="fashion-mnist", data_dir=str(tmp_path)), progress=False)
    assert s.classes[0] == "T-shirt/top" and s.classes[9] == "Ankle boot" and len(s.test) == 10
    monkeypatch.setitem(mnist._RAW_MD5, "fashion-mnist", ("0" * 32,) * 4)
    with pytest.raises(DataError, match="checksum mismatch"):
        load_data(DataConfig(source="fashion-mnist", data_dir=str(tmp_path)), progress=False)


def _cifar_batches(n: int = 4) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    out = {}
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        images = RNG.integers(0, 255, (n, 3072), dtype=np.uint8)
        images[:, 0] = i  # red of pixel (0, 0) tells the batch
        out[name] = (images, (np.arange(n) + i) % 10)
    return out


def _tar_bytes(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def _python_archive(path: Path, batches: dict) -> Path:
    files = {"cifar-10-batches-py/batches.meta": py2_pickle({"label_names": cifar10.CLASSES, "num_vis": 3072})}
    for name, (x, y) in batches.items():
        files[f"cifar-10-batches-py/{name}"] = py2_pickle(
            {"batch_label": name, "labels": [int(v) for v in y], "data": x, "filenames": [f"{k}.png" for k in y]}
        )
    return _tar_bytes(path, files)


def _binary_archive(path: Path, batches: dict) -> Path:
    files = {"cifar-10-batches-bin/batches.meta.txt": "\n".join(cifar10.CLASSES).encode()}
    for name, (x, y) in batches.items():
        rec = np.concatenate([y.astype(np.uint8)[:, None], x], axis=1)
        files[f"cifar-10-batches-bin/{name}.bin"] = rec.tobytes()
    return _tar_bytes(path, files)


def _with_md5(monkeypatch: pytest.MonkeyPatch, attr: str, path: Path) -> None:
    old = getattr(cifar10, attr)
    monkeypatch.setattr(cifar10, attr, type(old)(old.name, old.urls, md5=_md5(path.read_bytes())))


def test_cifar_python_archive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    batches = _cifar_batches()
    _with_md5(monkeypatch, "PYTHON", _python_archive(tmp_path / "cifar-10-python.tar.gz", batches))
    s = load_data(DataConfig(source="cifar10", data_dir=str(tmp_path), split=(1.0, 0.0)), progress=False)
    assert s.classes == cifar10.CLASSES and len(s.train) == 20 and len(s.test) == 4
    x, y = batches["test_batch"]
    assert np.array_equal(s.test.images.numpy(), x.reshape(-1, 3, 32, 32)) and s.test.labels.tolist() == y.tolist()
    assert s.info["format"] == "official python batches"
    with pytest.raises(DataError, match="checksum mismatch"):
        monkeypatch.setattr(cifar10, "PYTHON", cifar10.Remote("cifar-10-python.tar.gz", (), md5="0" * 32))
        load_data(DataConfig(source="cifar10", data_dir=str(tmp_path)), progress=False)


def test_cifar_binary_preferred_and_equal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    batches = _cifar_batches()
    _with_md5(monkeypatch, "PYTHON", _python_archive(tmp_path / "cifar-10-python.tar.gz", batches))
    _with_md5(monkeypatch, "BINARY", _binary_archive(tmp_path / "cifar-10-binary.tar.gz", batches))
    b = load_data(DataConfig(source="cifar10", data_dir=str(tmp_path)), progress=False)
    assert b.info["format"] == "official binary batches"
    os.remove(tmp_path / "cifar-10-binary.tar.gz")
    p = load_data(DataConfig(source="cifar10", data_dir=str(tmp_path)), progress=False)
    assert torch.equal(b.train.images, p.train.images) and torch.equal(b.test.labels, p.test.labels)


def test_cifar_binary_record_errors() -> None:
    with pytest.raises(ValueError, match="3073-byte"):
        read_binary_batch(b"\x00" * 3000)


def test_safe_unpickler_refuses_code() -> None:
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    with pytest.raises(pickle.UnpicklingError, match="refusing to load posix.system"):
        SafeUnpickler(io.BytesIO(pickle.dumps(Evil(), protocol=2))).load()


def test_cifar_jpg_folder_copy(tmp_path: Path) -> None:
    make_classes(tmp_path / "train", dict.fromkeys(cifar10.CLASSES, 3), size=(32, 32), ext=".jpg")
    s = load_data(DataConfig(source="cifar10", data_dir=str(tmp_path)), progress=False)
    assert s.classes == cifar10.CLASSES and s.train.images.shape[1:] == (3, 32, 32)
    assert len(s.train) + len(s.val) + len(s.test) == 30 and s.info["source"] == "cifar10"


def test_imagenette_archive_val_is_test(tmp_path: Path) -> None:
    root = tmp_path / "src" / "imagenette2-160"
    make_classes(root / "train", {"n01440764": 5, "n02102040": 5}, size=(60, 40), ext=".JPEG")
    make_classes(root / "val", {"n01440764": 2, "n02102040": 2}, size=(60, 40), ext=".JPEG")
    with tarfile.open(tmp_path / "imagenette2-160.tgz", "w:gz") as tf:
        tf.add(root, arcname="imagenette2-160")
    s = load_data(DataConfig(source="imagenette", data_dir=str(tmp_path)), progress=False)
    assert s.classes == ["tench", "English springer"] and s.train.classes == s.classes
    assert s.train.images.shape[1:] == (3, 128, 128) and s.info["preprocessing"]["resize"] == "crop"
    assert len(s.test) == 4 and s.info["wnids"] == ["n01440764", "n02102040"]
    s = load_data(DataConfig(source="imagenette", data_dir=str(tmp_path), image_size=(32, 48)), progress=False)
    assert s.train.images.shape[1:] == (3, 32, 48) and s.info["preprocessing"]["resize"] == "stretch"


def test_cats_vs_dogs_microsoft_zip(tmp_path: Path) -> None:
    pets = make_classes(tmp_path / "PetImages", {"Cat": 4, "Dog": 4}, size=(50, 40), ext=".jpg")
    (pets / "Cat" / "666.jpg").write_bytes(b"")  # the archive's famous zero-byte file
    (pets / "Dog" / "Thumbs.db").write_bytes(b"\x00" * 10)
    with zipfile.ZipFile(tmp_path / "kagglecatsanddogs_5340.zip", "w") as zf:
        for p in sorted(pets.rglob("*")):
            zf.write(p, p.relative_to(tmp_path).as_posix())
    data_dir = tmp_path / "dl"
    data_dir.mkdir()
    (tmp_path / "kagglecatsanddogs_5340.zip").rename(data_dir / "kagglecatsanddogs_5340.zip")
    s = load_data(DataConfig(source="cats-vs-dogs", data_dir=str(data_dir)), progress=False)
    assert s.classes == ["Cat", "Dog"] and s.train.images.shape[1:] == (3, 64, 64)
    assert [Path(p).name for p, _ in s.info["skipped"]] == ["666.jpg"]
    assert s.info["ignored_non_image_files"] == 1


def test_cats_vs_dogs_keras_layout(tmp_path: Path) -> None:
    make_classes(tmp_path / "training_set" / "training_set", {"cats": 5, "dogs": 5})
    make_classes(tmp_path / "test_set" / "test_set", {"cats": 2, "dogs": 2})
    save(tmp_path / "single_prediction" / "cat_or_dog_1.jpg", (1, 2, 3))
    s = load_data(DataConfig(source="cats-vs-dogs", data_dir=str(tmp_path)), progress=False)
    assert s.classes == ["cats", "dogs"] and len(s.test) == 4
