"""Decoded uint8 cache: a second load with the same files and preprocessing does not decode again.

``<cache>/decoded/<key>.safetensors`` holds ``<part>.images`` / ``<part>.labels`` for each part of a Prepared
source; ``<key>.json`` beside it holds classes and info (skipped files...). The key hashes the source, its
file fingerprint, image size, channels, resize and DATA_FORMAT_VERSION. Splitting happens after the cache,
so a new split ratio or seed reuses it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .._io import atomic_path, write_json
from ._types import ImageSet, Prepared

DATA_FORMAT_VERSION = 2  # bump when decoding changes the pixels (2: EXIF orientation applied)


def cache_key(**parts: Any) -> str:
    blob = json.dumps({"format": DATA_FORMAT_VERSION, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def cached(cache_root: Path, key: str, build: Callable[[], Prepared]) -> Prepared:
    """Load ``key`` from the cache, or ``build()`` and store it. info['cache'] says which happened."""
    base = cache_root / "decoded" / key
    prep = _load(base)
    if prep is not None:
        prep.info["cache"] = {"hit": True, "path": str(base) + ".safetensors"}
        return prep
    prep = build()
    _save(base, prep)
    prep.info["cache"] = {"hit": False, "path": str(base) + ".safetensors"}
    return prep


def _save(base: Path, prep: Prepared) -> None:
    tensors = {}
    for name, s in prep.parts.items():
        tensors[f"{name}.images"] = s.images.contiguous()
        tensors[f"{name}.labels"] = s.labels.contiguous()
    with atomic_path(base.with_suffix(".safetensors")) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "convforge-data", "version": str(DATA_FORMAT_VERSION)})
    info = {k: v for k, v in prep.info.items() if k != "cache"}
    write_json(base.with_suffix(".json"), {"classes": prep.classes, "parts": sorted(prep.parts), "info": info})


def _load(base: Path) -> Prepared | None:
    side, data = base.with_suffix(".json"), base.with_suffix(".safetensors")
    if not (side.is_file() and data.is_file()):
        return None
    try:
        meta = json.loads(side.read_text())
        tensors = load_file(str(data))
        parts = {
            p: ImageSet(tensors[f"{p}.images"], tensors[f"{p}.labels"], list(meta["classes"])) for p in meta["parts"]
        }
    except (OSError, ValueError, KeyError, SafetensorError):
        return None  # a damaged cache entry is rebuilt, never trusted
    return Prepared(parts, list(meta["classes"]), dict(meta["info"]))
