"""Stratified seeded splits and the decoded-image cache."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from data_helpers import make_classes

from convforge.data import DataConfig, load_data
from convforge.data import folder as folder_mod
from convforge.data.split import stratified_indices


def test_stratified_counts_and_coverage() -> None:
    labels = np.repeat([0, 1, 2], [100, 10, 3])
    train, val, test = stratified_indices(labels, (0.8, 0.1, 0.1), seed=0)
    assert [np.bincount(labels[p], minlength=3).tolist() for p in (train, val, test)] == [
        [80, 8, 1], [10, 1, 1], [10, 1, 1],
    ]  # fmt: skip
    assert len(np.intersect1d(train, val)) == 0 and len(np.concatenate([train, val, test])) == len(labels)


def test_split_is_deterministic_per_seed() -> None:
    labels = np.repeat(np.arange(5), 40)
    a = stratified_indices(labels, (0.6, 0.2, 0.2), seed=3)
    b = stratified_indices(labels, (0.6, 0.2, 0.2), seed=3)
    c = stratified_indices(labels, (0.6, 0.2, 0.2), seed=4)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[1], c[1])


def test_tiny_classes_keep_train() -> None:
    labels = np.array([0, 1, 1])
    parts = stratified_indices(labels, (0.8, 0.1, 0.1), seed=0)
    assert [len(p) for p in parts] == [3, 0, 0]  # too few images for three parts: all stay in train


def test_cache_hit_skips_decoding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_classes(tmp_path / "set", {"a": 6, "b": 6})
    first = load_data(DataConfig(source=str(root)), progress=False)
    assert first.info["cache"]["hit"] is False

    def boom(*a, **k):
        raise AssertionError("decoded again")

    monkeypatch.setattr(folder_mod, "decode_array", boom)
    again = load_data(DataConfig(source=str(root), split=(0.5, 0.5), seed=9), progress=False)  # new split: same cache
    assert again.info["cache"]["hit"] is True and again.info["split"]["seed"] == 9
    assert torch.equal(torch.sort(torch.cat([again.train.labels, again.test.labels]))[0],
                       torch.sort(torch.cat([first.train.labels, first.val.labels, first.test.labels]))[0])  # fmt: skip
    cache_file = Path(again.info["cache"]["path"])
    assert cache_file.parent.name == "decoded" and cache_file.with_suffix(".json").is_file()
    with pytest.raises(AssertionError, match="decoded again"):  # other preprocessing: a new key
        load_data(DataConfig(source=str(root), image_size=(8, 8)), progress=False)
    os.utime(root / "a" / "000.png", ns=(1, 1))  # a changed file: a new key
    with pytest.raises(AssertionError, match="decoded again"):
        load_data(DataConfig(source=str(root)), progress=False)


def test_damaged_cache_is_rebuilt(tmp_path: Path) -> None:
    root = make_classes(tmp_path / "set", {"a": 3, "b": 3})
    first = load_data(DataConfig(source=str(root)), progress=False)
    Path(first.info["cache"]["path"]).write_bytes(b"garbage")
    again = load_data(DataConfig(source=str(root)), progress=False)
    assert again.info["cache"]["hit"] is False and torch.equal(again.train.images, first.train.images)
