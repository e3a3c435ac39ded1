"""Folder datasets: layouts, skipped files, strict mode, defaults, clear errors."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from data_helpers import make_classes, save
from PIL import Image

from convforge.data import DataConfig, load_data, skipped_warning
from convforge.data import folder as folder_mod
from convforge.errors import DataError


def cfg(source: Path, **kw) -> DataConfig:
    return DataConfig(source=str(source), **kw)


def test_class_folders_split_and_info(tmp_path: Path) -> None:
    root = make_classes(tmp_path / "set", {"dogs": 20, "cats": 10})
    s = load_data(cfg(root, split=(0.8, 0.1, 0.1)), progress=False)
    assert s.classes == ["cats", "dogs"]
    assert s.train.images.dtype == torch.uint8 and s.train.labels.dtype == torch.int64
    assert s.train.images.shape[1:] == (3, 12, 16) and s.train.images.is_contiguous()
    assert s.info["counts"]["train"]["per_class"] == {"cats": 8, "dogs": 16}
    assert s.info["counts"]["val"]["per_class"] == {"cats": 1, "dogs": 2}
    assert s.info["counts"]["test"]["per_class"] == {"cats": 1, "dogs": 2}
    assert s.info["layout"] == "class folders" and s.info["skipped"] == []
    assert s.info["preprocessing"] == {
        "resize": "stretch", "size_rule": "all images share this size", "channels_rule": "3: some images are colour",
        "channels": 3, "height": 12, "width": 16,
    }  # fmt: skip
    # the label really indexes the sorted class: dogs were written first (red 0), cats second (red 40)
    assert (s.train.images[s.train.labels == 0][:, 0] == 40).all()
    assert (s.train.images[s.train.labels == 1][:, 0] == 0).all()


def test_nested_mixed_case_extensions_and_ignored(tmp_path: Path) -> None:
    root = tmp_path / "set"
    save(root / "a" / "one.PNG", (1, 1, 1))
    save(root / "a" / "batch2" / "two.JpG", (1, 1, 1), fmt="JPEG")
    save(root / "b" / "x.tiff", (2, 2, 2), fmt="TIFF")
    save(root / "b" / "y.BMP", (2, 2, 2), fmt="BMP")
    (root / "b" / "notes.txt").write_text("hi")
    (root / "b" / ".hidden.png").write_bytes(b"")
    s = load_data(cfg(root, split=(1.0, 0.0)), progress=False)
    assert s.info["counts"]["train"]["per_class"] == {"a": 2, "b": 2}
    assert s.info["ignored_non_image_files"] == 1 and s.info["files"] == 4


def test_bad_files_are_skipped_and_listed(tmp_path: Path) -> None:
    root = make_classes(tmp_path / "set", {"cats": 4, "dogs": 4})
    (root / "cats" / "zero.jpg").write_bytes(b"")
    (root / "dogs" / "text.jpg").write_text("not a jpeg")
    noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "full.png")
    good = (tmp_path / "full.png").read_bytes()
    (root / "dogs" / "trunc.png").write_bytes(good[: len(good) // 2])
    s = load_data(cfg(root, split=(0.5, 0.5)), progress=False)
    skipped = {Path(p).name: r for p, r in s.info["skipped"]}
    assert skipped == {
        "zero.jpg": "empty file (0 bytes)", "text.jpg": "not an image (unknown format)",
        "trunc.png": skipped["trunc.png"],
    }  # fmt: skip
    assert skipped["trunc.png"].startswith("corrupt or truncated")
    assert len(s.train) + len(s.test) == 8
    assert skipped_warning(s.info).startswith("skipped 3 unreadable image file(s)")
    with pytest.raises(DataError, match=r"cannot read image .*(zero|text|trunc)\.(jpg|png): .*drop --strict"):
        load_data(cfg(root, strict=True, cache_dir=str(tmp_path / "c2")), progress=False)
    with pytest.raises(DataError, match="drop --strict"):  # strict also applies on a cache hit
        load_data(cfg(root, strict=True), progress=False)


def test_single_class_and_empty_folders(tmp_path: Path) -> None:
    one = make_classes(tmp_path / "one", {"cats": 3})
    with pytest.raises(DataError, match="has only one class 'cats'; a classifier needs at least two class folders"):
        load_data(cfg(one), progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no class folders with images"):
        load_data(cfg(tmp_path / "empty"), progress=False)
    two = make_classes(tmp_path / "two", {"cats": 3})
    (two / "dogs").mkdir()
    with pytest.raises(DataError, match=r"class folder .*dogs holds no image files"):
        load_data(cfg(two), progress=False)
    (two / "dogs" / "a.jpg").write_bytes(b"")
    with pytest.raises(DataError, match=r"class folder .*dogs has no readable image"):
        load_data(cfg(two), progress=False)
    with pytest.raises(DataError, match="folder not found"):
        load_data(cfg(tmp_path / "nope"), progress=False)


def test_keras_layout_with_repeated_wrapper(tmp_path: Path) -> None:
    root = tmp_path / "keras"
    make_classes(root / "training_set" / "training_set", {"cats": 10, "dogs": 10})
    make_classes(root / "test_set" / "test_set", {"cats": 3, "dogs": 2})
    s = load_data(cfg(root, split=(0.8, 0.2, 0.0)), progress=False)
    assert s.info["layout"] == "train/test folders"
    assert s.info["counts"]["test"]["per_class"] == {"cats": 3, "dogs": 2}
    assert s.info["counts"]["val"]["per_class"] == {"cats": 2, "dogs": 2}  # carved: 20% of train
    assert s.info["counts"]["train"]["per_class"] == {"cats": 8, "dogs": 8}
    assert "val carved from train" in s.info["split"]["method"]


@pytest.mark.parametrize("val_name", ["val", "valid", "validation", "Validation"])
def test_train_val_test_layout(tmp_path: Path, val_name: str) -> None:
    root = tmp_path / "tvt"
    make_classes(root / "train", {"a": 5, "b": 5})
    make_classes(root / val_name, {"a": 2, "b": 1})
    make_classes(root / "test", {"a": 1, "b": 3})
    s = load_data(cfg(root), progress=False)
    assert s.info["layout"] == "train/val/test folders"
    assert [len(s.train), len(s.val), len(s.test)] == [10, 3, 4]
    assert s.info["counts"]["val"]["per_class"] == {"a": 2, "b": 1}


def test_auto_size_and_channels(tmp_path: Path) -> None:
    root = tmp_path / "mixed"
    save(root / "a" / "1.png", 10, "L", size=(40, 20))
    save(root / "a" / "2.png", 10, "L", size=(300, 200))
    save(root / "b" / "1.png", 10, "L", size=(60, 50))
    s = load_data(cfg(root, split=(1.0, 0.0)), progress=False)
    assert s.train.images.shape[1:] == (1, 50, 50)  # grayscale; median shorter side of 20, 200, 50
    assert "median shorter side" in s.info["preprocessing"]["size_rule"]
    s = load_data(cfg(root, split=(1.0, 0.0), image_size=(8, 6), channels=3, resize="pad"), progress=False)
    assert s.train.images.shape[1:] == (3, 8, 6)


@pytest.mark.parametrize("workers", ["processes", "threads", "killed process"])
def test_pool_paths_match_serial(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: str) -> None:
    root = make_classes(tmp_path / "set", {"a": 30, "b": 30})
    (root / "a" / "bad.png").write_bytes(b"junk")
    serial = load_data(cfg(root, cache_dir=str(tmp_path / "c1")), progress=False)
    monkeypatch.setattr(folder_mod, "POOL_MIN_FILES", 5)
    monkeypatch.setattr(folder_mod, "_CHUNK", 7)
    if workers == "threads":
        monkeypatch.setattr(folder_mod, "decode_workers", lambda: 0)
    elif folder_mod.decode_workers() == 0:
        pytest.skip("no fork here")
    if workers == "killed process":  # a worker dies on its first range: the rest is decoded in this process
        parent, job_run = os.getpid(), folder_mod._DecodeJob.run

        def dying(job, start: int, stop: int):
            if os.getpid() != parent and start == 0:
                os._exit(1)
            return job_run(job, start, stop)

        monkeypatch.setattr(folder_mod._DecodeJob, "run", dying)
    pooled = load_data(cfg(root, cache_dir=str(tmp_path / "c2")), progress=False)
    assert torch.equal(serial.train.images, pooled.train.images) and serial.info["skipped"] == pooled.info["skipped"]
    with pytest.raises(DataError, match="bad.png"):
        load_data(cfg(root, strict=True, cache_dir=str(tmp_path / "c3")), progress=False)


def test_auto_size_rule() -> None:
    assert folder_mod.auto_size([(10, 20)] * 3) == ((20, 10), "all images share this size")
    assert folder_mod.auto_size([(1000, 900), (800, 700)])[0] == (128, 128)
    assert folder_mod.auto_size([(10, 12), (14, 8)])[0] == (32, 32)
    assert np.isscalar(folder_mod.auto_size([(50, 60), (70, 80)])[0][0])
