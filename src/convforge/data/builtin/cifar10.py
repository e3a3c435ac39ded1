"""cifar10: the official python or binary archive (binary preferred), or a JPEG image-folder copy.

In each search folder (see _download): ``cifar-10-batches-bin/``, ``cifar-10-binary.tar.gz``,
``cifar-10-batches-py/``, ``cifar-10-python.tar.gz``, then ``cifar10-jpg-train.tar.gz`` or an extracted
``train/<class>/*.jpg`` (no test set there: split by ratio). Archives are read in place, never unpickled
unsafely (see _cifar_format). Missing everywhere: the python archive is downloaded.
"""

from __future__ import annotations

import tarfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ...errors import DataError
from .._download import Remote, fetch, mismatch, search_dirs
from .._types import Prepared
from ..config import DataConfig
from ._archived_folder import load_archive_or_folder
from ._arrays import cached_arrays, prepared
from ._cifar_format import read_binary_batch, read_python_batch

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
PYTHON = Remote(
    "cifar-10-python.tar.gz",
    ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",),
    md5="c58f30108f718f92721af3b95e74349a",
)
BINARY = Remote(
    "cifar-10-binary.tar.gz",
    ("https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",),
    md5="c32a1d4ab5d03f1284b67883e8d87530",
)
JPG_ARCHIVE = "cifar10-jpg-train.tar.gz"
_TRAIN = [f"data_batch_{i}" for i in range(1, 6)]


def load(cfg: DataConfig, progress: bool = True) -> Prepared:
    formats = (("cifar-10-batches-bin", BINARY, ".bin", read_binary_batch),
               ("cifar-10-batches-py", PYTHON, "", read_python_batch))  # fmt: skip  # binary first: preferred
    for d in search_dirs(cfg, "cifar10", ("cifar-10", "CIFAR10")):
        for folder, remote, suffix, reader in formats:
            if (d / folder).is_dir():
                return _batches(cfg, progress, d / folder, suffix, reader)
            if (d / remote.name).is_file():
                return _batches(cfg, progress, _verified(d / remote.name, remote), suffix, reader)
        jpg = d / JPG_ARCHIVE if (d / JPG_ARCHIVE).is_file() else _jpg_folder(d)
        if jpg is not None:
            native = {"image_size": (32, 32), "channels": 3}
            info = {"files": str(jpg), "format": "JPEG image folder (training images only)"}
            return load_archive_or_folder(jpg, "cifar10", cfg, progress, native, info)
    archive = fetch(cfg, "cifar10", [PYTHON], progress) / PYTHON.name
    return _batches(cfg, progress, archive, "", read_python_batch)


def _verified(path: Path, remote: Remote) -> Path:
    bad = mismatch(path, remote)
    if bad:
        raise DataError(f"checksum mismatch for {path}: {bad}; delete it and download it again")
    return path


def _jpg_folder(d: Path) -> Path | None:
    train = d / "train"
    if train.is_dir() and {p.name for p in train.iterdir() if p.is_dir()} == set(CLASSES):
        return d
    return None


def _batches(cfg: DataConfig, progress: bool, src: Path, suffix: str, reader: Callable) -> Prepared:
    def build() -> Prepared:
        blobs = _read_members(src, [n + suffix for n in [*_TRAIN, "test_batch"]])
        try:
            train = [reader(blobs[n + suffix]) for n in _TRAIN]
            test_x, test_y = reader(blobs["test_batch" + suffix])
        except Exception as e:  # any parse failure of a data file is the file's fault, reported as such
            raise DataError(f"cannot read CIFAR-10 batches in {src}: {e}; download them again") from None
        parts = {
            "train": (np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train])),
            "test": (test_x, test_y),
        }
        fmt = "binary" if suffix else "python"
        return prepared(parts, CLASSES, cfg, {"source": "cifar10", "kind": "builtin", "files": str(src),
                                              "format": f"official {fmt} batches"}, progress)  # fmt: skip

    return cached_arrays("cifar10", cfg, [src] if src.is_file() else sorted(src.iterdir()), build)


def _read_members(src: Path, names: list[str]) -> dict[str, bytes]:
    """The named batch files from an extracted folder or, read in place, from the tar archive."""
    if src.is_dir():
        missing = [n for n in names if not (src / n).is_file()]
        if missing:
            raise DataError(f"{src} lacks {', '.join(missing)}; extract the complete archive there")
        return {n: (src / n).read_bytes() for n in names}
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(src) as tf:
            for m in tf.getmembers():
                base = m.name.rsplit("/", 1)[-1]
                if m.isfile() and base in names and base not in found:
                    found[base] = tf.extractfile(m).read()
    except (tarfile.TarError, OSError, EOFError) as e:
        raise DataError(f"cannot read {src}: {e}; delete it and download it again") from None
    missing = [n for n in names if n not in found]
    if missing:
        raise DataError(f"{src} lacks {', '.join(missing)}; it is not a complete CIFAR-10 archive")
    return found
