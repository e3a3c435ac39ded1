"""data/: sources (folders, built-in sets, download + checksum + offline lookup), decoding, split, cache.

splits = load_data(DataConfig(source="mnist"))   # uint8 N x C x H x W sets, info JSON-able
"""

from __future__ import annotations

from ._decode import decode_image, exif_orientation
from ._types import DataSplits, ImageSet
from .builtin import SOURCES
from .config import DataConfig
from .files import split_files
from .grid import sample_grid
from .inspect import inspect_source
from .load import load_data, skipped_warning

__all__ = [
    "SOURCES",
    "DataConfig",
    "DataSplits",
    "ImageSet",
    "decode_image",
    "exif_orientation",
    "inspect_source",
    "load_data",
    "sample_grid",
    "skipped_warning",
    "split_files",
]
