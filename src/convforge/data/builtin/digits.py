"""digits: scikit-learn's bundled 8x8 handwritten digits (1,797 images, no download), split by ratio."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from .._types import Prepared
from ..config import DataConfig
from ._arrays import prepared


def load(cfg: DataConfig, progress: bool = True) -> Prepared:
    values, labels = _bundled()
    # values are 0..16: scale exactly to 0..255 with round(v * 255 / 16), half up
    images = np.floor(values.reshape(-1, 1, 8, 8) * 255.0 / 16.0 + 0.5).astype(np.uint8)
    info = {"source": "digits", "kind": "builtin", "files": "scikit-learn load_digits (bundled)"}
    return prepared({"all": (images, labels)}, [str(i) for i in range(10)], cfg, info, progress)


def _bundled() -> tuple[np.ndarray, np.ndarray]:
    """(values 0..16 as float64 N x 64, labels): the CSV scikit-learn ships, read without importing sklearn.datasets
    (its import took 1.7 s of the 2-core Quickstart's 15 s; load_digits reads this same file), else load_digits."""
    spec = importlib.util.find_spec("sklearn")  # finds the package without running it
    csv = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz" if spec and spec.origin else None
    if csv is not None and csv.is_file():
        data = np.loadtxt(csv, delimiter=",")
        return data[:, :-1], data[:, -1].astype(np.int64)
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return np.asarray(bunch.data, np.float64), np.asarray(bunch.target, np.int64)
