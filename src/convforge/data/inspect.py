"""inspect_source: what a dataset holds before training (counts, sizes, modes, unreadable files).

Folders are inspected from image headers only (cheap: no full decode), so a file whose header is fine but
whose data is truncated shows up later, when loading, in info['skipped']. Built-in sets are loaded.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from ._archive import is_archive
from ._decode import BadImage, read_header
from ._layout import find_layout
from .builtin import SOURCES
from .config import DataConfig


def inspect_source(source: str | Path | DataConfig, progress: bool = False) -> dict[str, Any]:
    """A JSON-able report: classes, counts per split and class, image sizes and modes, problems."""
    cfg = source if isinstance(source, DataConfig) else DataConfig(source=str(source))
    cfg.validate()
    path = Path(cfg.source).expanduser()
    if cfg.source not in SOURCES and is_archive(path):
        from .load import prepare

        prepare(dataclasses.replace(cfg, image_size=(8, 8), channels=1), progress)  # extracts it once
        path = Path(_extracted(cfg, path))
    if cfg.source in SOURCES or not path.is_dir():
        return _inspect_loaded(cfg, progress)
    return _inspect_folder(path)


def _extracted(cfg: DataConfig, path: Path) -> str:
    import hashlib

    tag = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
    return str(cfg.cache_path() / "archives" / f"{path.name.split('.')[0]}-{tag}")


def _inspect_folder(root: Path) -> dict[str, Any]:
    layout = find_layout(root.resolve())
    sizes: list[tuple[int, int]] = []
    modes: Counter[str] = Counter()
    problems: list[list[str]] = []
    for per in layout.files.values():
        for files in per.values():
            for p in files:
                try:
                    size, mode = read_header(p)
                except BadImage as e:
                    problems.append([str(p), str(e)])
                    continue
                sizes.append(size)
                modes[mode] += 1
    counts = {s: {c: len(f) for c, f in per.items()} for s, per in layout.files.items()}
    return {
        "source": str(root.resolve()),
        "kind": "folder",
        "layout": layout.kind,
        "classes": layout.classes,
        "counts": counts,
        "total": sum(sum(c.values()) for c in counts.values()),
        "sizes": size_report(sizes),
        "modes": dict(modes.most_common()),
        "problems": problems,
        "ignored_non_image_files": layout.ignored,
    }


def size_report(sizes: list[tuple[int, int]]) -> dict[str, Any]:
    """min / median / max of width and height, and how many distinct (w, h) sizes."""
    if not sizes:
        return {"distinct": 0}
    w, h = np.array(sizes).T
    stats = {k: {"min": int(v.min()), "median": float(np.median(v)), "max": int(v.max())} for k, v in
             (("width", w), ("height", h))}  # fmt: skip
    common = Counter(sizes).most_common(1)[0]
    return {**stats, "distinct": len(set(sizes)), "most_common": {"size": list(common[0]), "count": common[1]}}


def _inspect_loaded(cfg: DataConfig, progress: bool) -> dict[str, Any]:
    from .load import load_data

    splits = load_data(cfg, progress)
    sets = {"train": splits.train, "val": splits.val, "test": splits.test}
    c, h, w = splits.train.images.shape[1:]
    total = sum(len(s) for s in sets.values())
    return {
        "source": cfg.source,
        "kind": splits.info.get("kind", "builtin"),
        "classes": splits.classes,
        "counts": {k: s.counts() for k, s in sets.items()},
        "total": total,
        "sizes": size_report([(int(w), int(h))] * total),
        "modes": {"L" if c == 1 else "RGB": total},
        "problems": splits.info.get("skipped", []),
        "split": splits.info.get("split"),
    }
