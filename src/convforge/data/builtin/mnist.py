"""mnist and fashion-mnist: the four canonical IDX .gz files; official test set, val carved from train.

Found offline in data_dir (directly, in NAME/, or torchvision's MNIST/raw or FashionMNIST/raw), the cache, or
Debian's /usr/share/datasets/NAME (package dataset-fashion-mnist, recompressed: checked by uncompressed md5).
Uncompressed copies (torchvision keeps them) are accepted when the .gz files are absent.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np

from ...errors import DataError
from .._download import Remote, fetch, gunzip_bytes, locate
from .._types import Prepared
from ..config import DataConfig
from ._arrays import cached_arrays, prepared
from ._idx import read_idx

_MNIST_URLS = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/")
_FASHION_URLS = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)
_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

# .gz md5s: torchvision's lists. Fashion uncompressed md5s: the official release (Debian recompressed the .gz).
_MD5 = {
    "mnist": ("f68b3c2dcbeaaa9fbdd348bbdeb94873", "d53e105ee54ea40749a09fcbcd1e9432",
              "9fb629c4189551a2d022fa330f9573f3", "ec29112dd5afa0611ce80d1b7f02629c"),
    "fashion-mnist": ("8d4fb7e6c68d591d4c3dfef9ec88bf0d", "25c81989df183df01b3e8a0aad5dffbe",
                      "bef4ecab320f06d8554ea6380940ec79", "bb300cfdad3c16e7a12a480ee83cd310"),
}  # fmt: skip
_RAW_MD5 = {
    "mnist": (None, None, None, None),
    "fashion-mnist": ("f4a8712d7a061bf5bd6d2ca38dc4d50a", "9018921c3c673c538a1fc5bad174d6f9",
                      "8181f5470baa50b63fa0f6fddb340f0a", "15d484375f8d13e6eb1aabb0c3f46965"),
}  # fmt: skip
CLASSES = {
    "mnist": [str(i) for i in range(10)],
    "fashion-mnist": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                      "Ankle boot"],
}  # fmt: skip
_TORCHVISION_DIR = {"mnist": ("MNIST/raw",), "fashion-mnist": ("FashionMNIST/raw",)}


def remotes(name: str) -> list[Remote]:
    urls = _MNIST_URLS if name == "mnist" else _FASHION_URLS
    return [
        Remote(f"{n}.gz", tuple(u + f"{n}.gz" for u in urls), md5=md5, gunzip_md5=raw)
        for n, md5, raw in zip(_NAMES, _MD5[name], _RAW_MD5[name], strict=True)
    ]


def _raw_remotes(name: str) -> list[Remote]:
    return [Remote(n, (), md5=raw) for n, raw in zip(_NAMES, _RAW_MD5[name], strict=True)]


def find_files(cfg: DataConfig, name: str, progress: bool) -> list[Path]:
    """The four files (gz or uncompressed), found offline or downloaded."""
    extra = _TORCHVISION_DIR[name]
    gz = locate(cfg, name, remotes(name), extra)
    if gz is not None:
        return [gz / r.name for r in remotes(name)]
    raw = locate(cfg, name, _raw_remotes(name), extra)
    if raw is not None:
        return [raw / n for n in _NAMES]
    folder = fetch(cfg, name, remotes(name), progress, extra)
    return [folder / r.name for r in remotes(name)]


def _read(paths: list[Path]) -> list[np.ndarray]:
    out = []
    for p in paths:
        try:
            out.append(read_idx(gunzip_bytes(p), p.name))
        except (ValueError, OSError, EOFError) as e:
            raise DataError(f"cannot read {p}: {e}; delete it and download it again") from None
    return out


def load(cfg: DataConfig, progress: bool = True, name: str = "mnist") -> Prepared:
    paths = find_files(cfg, name, progress)

    def build() -> Prepared:
        train_x, train_y, test_x, test_y = _read(paths)
        for x, y, p in ((train_x, train_y, paths[0]), (test_x, test_y, paths[2])):
            if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
                raise DataError(f"{p} and its labels do not match ({x.shape} vs {y.shape}); download them again")
        parts = {
            "train": (train_x[:, None].astype(np.uint8), train_y.astype(np.int64)),
            "test": (test_x[:, None].astype(np.uint8), test_y.astype(np.int64)),
        }
        info = {"source": name, "kind": "builtin", "files": [str(p) for p in paths]}
        return prepared(parts, CLASSES[name], cfg, info, progress)

    return cached_arrays(name, cfg, paths, build)


load_mnist = partial(load, name="mnist")
load_fashion = partial(load, name="fashion-mnist")
