"""digits: scikit-learn's bundled 8x8 handwritten digits (1,797 images, no download), split by ratio."""

from __future__ import annotations

import numpy as np

from .._types import Prepared
from ..config import DataConfig
from ._arrays import prepared


def load(cfg: DataConfig, progress: bool = True) -> Prepared:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    # values are 0..16: scale exactly to 0..255 with round(v * 255 / 16), half up
    values = np.asarray(bunch.images, np.float64).reshape(-1, 1, 8, 8)
    images = np.floor(values * 255.0 / 16.0 + 0.5).astype(np.uint8)
    labels = np.asarray(bunch.target, np.int64)
    info = {"source": "digits", "kind": "builtin", "files": "scikit-learn load_digits (bundled)"}
    return prepared({"all": (images, labels)}, [str(i) for i in range(10)], cfg, info, progress)
