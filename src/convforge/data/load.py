"""load_data: a DataConfig -> decoded, split, uint8 image sets."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from ..errors import ConfigError, DataError
from ._archive import extract_once, is_archive
from ._types import DataSplits, Prepared
from .builtin import SOURCES
from .builtin._arrays import fingerprint
from .config import DataConfig
from .folder import load_folder
from .split import make_splits


def load_data(cfg: DataConfig, progress: bool = True) -> DataSplits:
    """Load ``cfg.source`` (a built-in name, a folder, or an archive of one) and split it.

    Built-in names win over a folder of the same name (write ``./digits`` for the folder). Decoded images are
    cached (see cache.py); the split is applied afterwards, so a new ratio or seed does not decode again.
    """
    cfg.validate()
    prep = prepare(cfg, progress)
    splits = make_splits(prep, cfg.ratios(), cfg.seed)
    splits.info.setdefault("skipped", [])
    splits.info["classes"] = list(splits.classes)
    return splits


def prepare(cfg: DataConfig, progress: bool = True) -> Prepared:
    """The unsplit source: built-in by name, else a folder or archive path."""
    if cfg.source in SOURCES:
        return SOURCES.get(cfg.source)(cfg, progress)
    path = Path(cfg.source).expanduser()
    if path.is_dir():
        return load_folder(path, cfg, progress)
    if is_archive(path):
        tag = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
        folder = cfg.cache_path() / "archives" / f"{path.name.split('.')[0]}-{tag}"
        prep = load_folder(extract_once(path, folder), cfg, progress, fingerprint=fingerprint([path]))
        prep.info["archive"] = str(path.resolve())
        return prep
    if path.exists():
        raise DataError(f"{path} is neither a folder nor a .zip/.tar(.gz) archive; give a folder of class folders")
    if "/" in cfg.source or "\\" in cfg.source or cfg.source.startswith("."):
        raise DataError(f"folder not found: {path}; check the path")
    try:
        SOURCES.get(cfg.source)
    except ConfigError as e:  # close matches, plus the folder alternative
        raise ConfigError(f"{e}; or give an existing folder of class folders") from None
    raise ConfigError(f"unknown source '{cfg.source}'")  # pragma: no cover


def skipped_warning(info: dict[str, Any]) -> str | None:
    """One warning line about skipped files (for the caller to print), or None."""
    skipped = info.get("skipped") or []
    if not skipped:
        return None
    path, reason = skipped[0]
    more = f" and {len(skipped) - 1} more" if len(skipped) > 1 else ""
    return f"skipped {len(skipped)} unreadable image file(s): {path} ({reason}){more}; see info['skipped']"
