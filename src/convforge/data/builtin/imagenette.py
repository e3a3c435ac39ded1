"""imagenette: 10 easy ImageNet classes (fast.ai). Default 128x128, shorter side resized then centre-cropped.

Looked up in each search folder: ``imagenette2-160[.tgz]``, ``imagenette2-320[.tgz]``, ``imagenette2[.tgz]``,
``imagenette-128-train.tar.gz`` or an extracted ``train/<wnid>/`` folder. The official ``val`` folder is the
test set (val is carved from train); a train-only copy is split by ratio. Missing everywhere: the 160 px
archive is downloaded. fast.ai publishes no checksum we could confirm, so none is listed: instead the archive
must hold the ten expected WordNet class folders (checked after safe extraction).
"""

from __future__ import annotations

from pathlib import Path

from ...errors import DataError
from .._download import Remote, fetch, search_dirs
from .._types import ImageSet, Prepared
from ..config import DataConfig
from ._archived_folder import load_archive_or_folder

WNID_NAMES = {
    "n01440764": "tench", "n02102040": "English springer", "n02979186": "cassette player",
    "n03000684": "chain saw", "n03028079": "church", "n03394916": "French horn", "n03417042": "garbage truck",
    "n03425413": "gas pump", "n03445777": "golf ball", "n03888257": "parachute",
    "n03888605": "parachute",  # the id some notes (our datasets README too) give; the real folder is n03888257
}  # fmt: skip
_URL = "https://s3.amazonaws.com/fast-ai-imageclas/"
VARIANTS = ("imagenette2-160", "imagenette2-320", "imagenette2")
SHARED_ARCHIVE = "imagenette-128-train.tar.gz"
NATIVE = {"image_size": (128, 128), "resize": "crop"}


def load(cfg: DataConfig, progress: bool = True) -> Prepared:
    path = _find(cfg)
    if path is None:
        remote = Remote(f"{VARIANTS[0]}.tgz", (f"{_URL}{VARIANTS[0]}.tgz",))  # no confirmed checksum (see above)
        path = fetch(cfg, "imagenette", [remote], progress) / remote.name
    prep = load_archive_or_folder(path, "imagenette", cfg, progress, NATIVE, {"files": str(path)})
    return _readable(_val_is_test(prep), path)


def _find(cfg: DataConfig) -> Path | None:
    for d in search_dirs(cfg, "imagenette"):
        for v in VARIANTS:
            for cand in (d / v, d / f"{v}.tgz"):
                if cand.exists():
                    return cand
        if (d / SHARED_ARCHIVE).is_file():
            return d / SHARED_ARCHIVE
        train = d / "train"
        if train.is_dir() and any((train / w).is_dir() for w in WNID_NAMES):
            return d
    return None


def _val_is_test(prep: Prepared) -> Prepared:
    """Imagenette's official 'val' folder is its held-out test set."""
    if "val" in prep.parts and "test" not in prep.parts:
        prep.parts["test"] = prep.parts.pop("val")
        prep.info["test_set"] = "official imagenette val folder"
    return prep


def _readable(prep: Prepared, path: Path) -> Prepared:
    unknown = [c for c in prep.classes if c not in WNID_NAMES]
    if unknown:
        raise DataError(f"{path} is not an Imagenette copy: unexpected class folder '{unknown[0]}'")
    names = [WNID_NAMES[c] for c in prep.classes]
    prep.info["wnids"] = list(prep.classes)
    prep.parts = {k: ImageSet(s.images, s.labels, names) for k, s in prep.parts.items()}
    prep.classes = names
    return prep
