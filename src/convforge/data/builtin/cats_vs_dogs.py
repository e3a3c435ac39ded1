"""cats-vs-dogs: Microsoft's Kaggle archive (PetImages/Cat, PetImages/Dog) or the Keras layout.

Looked up in each search folder: ``kagglecatsanddogs_5340.zip``, an extracted ``PetImages/``, the Keras
``training_set/ + test_set/`` layout, or ``cats_and_dogs_filtered/``. The Microsoft archive famously holds
corrupt and zero-byte JPEGs: the decoder skips them (listed in info['skipped']). Default 64x64, crop mode
(the Keras reference's input size). Microsoft publishes no checksum, so none is listed: the archive must
hold exactly two class folders (checked after safe extraction).
"""

from __future__ import annotations

from pathlib import Path

from ...errors import DataError
from .._download import Remote, fetch, search_dirs
from .._types import Prepared
from ..config import DataConfig
from ._archived_folder import load_archive_or_folder

ZIP = Remote(
    "kagglecatsanddogs_5340.zip",
    ("https://download.microsoft.com/download/3/E/1/3E1C3F21-ECDB-4869-8368-6DEBA77B919F/kagglecatsanddogs_5340.zip",),
)
NATIVE = {"image_size": (64, 64), "resize": "crop"}


def load(cfg: DataConfig, progress: bool = True) -> Prepared:
    path = _find(cfg)
    if path is None:
        path = fetch(cfg, "cats-vs-dogs", [ZIP], progress) / ZIP.name
    prep = load_archive_or_folder(path, "cats-vs-dogs", cfg, progress, NATIVE, {"files": str(path)})
    if len(prep.classes) != 2:
        raise DataError(f"{path} is not a cats-vs-dogs copy: expected 2 class folders, found {prep.classes}")
    return prep


def _find(cfg: DataConfig) -> Path | None:
    for d in search_dirs(cfg, "cats-vs-dogs"):
        if (d / ZIP.name).is_file():
            return d / ZIP.name
        for sub in ("PetImages", "cats_and_dogs_filtered"):
            if (d / sub).is_dir():
                return d / sub
        if (d / "training_set").is_dir() and (d / "test_set").is_dir():
            return d
    return None
