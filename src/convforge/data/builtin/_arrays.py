"""Shared steps for built-in sets that arrive as arrays: fit to the config's channels/size, cache, info."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .._decode import fit_array
from .._progress import progress_bar
from .._types import ImageSet, Prepared
from ..cache import cache_key, cached
from ..config import DataConfig


def adapt(images: np.ndarray, cfg: DataConfig, progress: bool = False) -> np.ndarray:
    """N x C x H x W uint8 -> the config's channels and size, through the same path as decoded files."""
    channels = cfg.channels or images.shape[1]
    size = cfg.size_hw() or tuple(images.shape[2:])
    if channels == images.shape[1] and size == tuple(images.shape[2:]):
        return images
    if size == tuple(images.shape[2:]) and images.shape[1] == 1:
        return np.repeat(images, 3, axis=1)  # L -> RGB replicates, exactly as Pillow does
    out = np.empty((len(images), channels, *size), np.uint8)
    with progress_bar(len(images), "resizing images", progress and len(images) > 5000) as advance:
        for i, a in enumerate(images):
            out[i] = fit_array(a, channels, size, cfg.resize)
            if i % 1000 == 999:
                advance(1000)
    return out


def preprocessing(images: np.ndarray, cfg: DataConfig) -> dict[str, Any]:
    return {"channels": int(images.shape[1]), "height": int(images.shape[2]), "width": int(images.shape[3]),
            "resize": cfg.resize}  # fmt: skip


def prepared(parts: dict[str, tuple[np.ndarray, np.ndarray]], classes: list[str], cfg: DataConfig,
             info: dict[str, Any], progress: bool = False) -> Prepared:  # fmt: skip
    """Arrays per part -> a Prepared source with info['preprocessing'] filled in."""
    sets, pre = {}, {}
    for name, (images, labels) in parts.items():
        images = adapt(images, cfg, progress)
        sets[name] = ImageSet.from_numpy(images, labels, classes)
        pre = preprocessing(images, cfg)
    return Prepared(sets, list(classes), {**info, "preprocessing": pre, "skipped": info.get("skipped", [])})


def fingerprint(paths: list[Path]) -> list[tuple[str, int, int]]:
    out = []
    for p in paths:
        st = p.stat()
        out.append((str(p.resolve()), st.st_size, st.st_mtime_ns))
    return out


def cached_arrays(name: str, cfg: DataConfig, paths: list[Path], build: Callable[[], Prepared]) -> Prepared:
    """Cache a file-based built-in set keyed on its files and preprocessing."""
    key = cache_key(source=name, files=fingerprint(paths), size=cfg.size_hw() or "native",
                    channels=cfg.channels or "native", resize=cfg.resize)  # fmt: skip
    return cached(cfg.cache_path(), key, build)
