"""The image file behind every row of a folder source's splits (streaming keeps the files encoded).

split_files(cfg, splits)["train"][i] is the file decoded into splits.train.images[i]. It repeats load_data's own
steps on file indices instead of pixels: the same layout discovery, the same skipped files left out, the same
make_splits (seed, ratios, given train/val/test folders), so the rows match by construction; the labels are checked.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import DataError
from ._layout import find_layout
from ._types import DataSplits, ImageSet, Prepared
from .config import DataConfig
from .folder import _all_files
from .split import make_splits


def split_files(cfg: DataConfig, splits: DataSplits) -> dict[str, list[Path]] | None:
    """{"train"|"val"|"test": files in row order} for a folder or archive source; None for built-in sets."""
    if splits.info.get("kind") != "folder":
        return None
    layout = find_layout(Path(splits.info["source"]), cfg.min_classes)
    skipped = {p for p, _ in splits.info.get("skipped") or []}
    entries = [(s, c, p) for s, c, p in _all_files(layout) if str(p) not in skipped]
    index = {c: i for i, c in enumerate(splits.classes)}
    labels = torch.tensor([index.get(c, -1) for _, c, _ in entries], dtype=torch.long)
    parts = {}
    for split in layout.split_dirs:
        rows = torch.tensor([i for i, (s, _, _) in enumerate(entries) if s == split], dtype=torch.long)
        parts[split] = ImageSet(rows, labels[rows], list(splits.classes))  # "images" are row numbers here
    by_row = make_splits(Prepared(parts, list(splits.classes), {}), cfg.ratios(), cfg.seed)
    out = {}
    for name in ("train", "val", "test"):
        mine, theirs = getattr(by_row, name), getattr(splits, name)
        if not torch.equal(mine.labels, theirs.labels):
            raise DataError(f"{splits.info['source']} changed while loading; run the command again")
        out[name] = [entries[i][2] for i in mine.images.tolist()]
    return out
