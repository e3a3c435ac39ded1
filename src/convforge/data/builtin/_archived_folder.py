"""Built-in sets shipped as image folders (or archives of them): extract once, then load as a folder."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from .._archive import extract_once
from .._types import Prepared
from ..config import DataConfig
from ..folder import load_folder
from ._arrays import fingerprint


def load_archive_or_folder(
    path: Path, name: str, cfg: DataConfig, progress: bool, native: dict[str, Any], info: dict[str, Any]
) -> Prepared:
    """Load an image-folder archive (extracted once into ``<cache>/NAME/``) or an extracted folder.

    ``native`` holds the set's defaults (image_size, channels, resize) used where the config leaves image_size
    (or channels) open; an explicit image_size keeps the config's resize mode.
    """
    sub = dataclasses.replace(
        cfg,
        image_size=cfg.image_size or native["image_size"],
        channels=cfg.channels or native.get("channels"),
        resize=cfg.resize if cfg.image_size else native.get("resize", cfg.resize),
    )
    if path.is_file():
        folder = cfg.cache_path() / name / path.name.split(".")[0]
        prep = load_folder(extract_once(path, folder), sub, progress, fingerprint=fingerprint([path]))
    else:
        prep = load_folder(path, sub, progress)
    prep.info = {**prep.info, **info, "source": name, "kind": "builtin", "folder": prep.info.get("source")}
    return prep
