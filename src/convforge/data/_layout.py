"""Where the images of a folder dataset are: class folders, or train/val/test folders holding class folders.

Recognised (names case-insensitive): ``ROOT/<class>/[<sub>/]*.png``; ``ROOT/training_set/ + test_set/`` (Keras,
also with a repeated wrapper ``training_set/training_set/cats``); ``ROOT/train/ + val|valid|validation/ + test/``.
A folder whose only content is one subfolder of folders (``PetImages/``, ``train/``) is unwrapped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DataError
from ._decode import IMAGE_EXTS

SPLIT_NAMES = {
    "train": {"train", "training", "training_set", "train_set", "trainset"},
    "val": {"val", "valid", "validation", "val_set", "valid_set", "validation_set"},
    "test": {"test", "testing", "test_set", "testset"},
}
_JUNK = {"__MACOSX"}


@dataclass
class Layout:
    kind: str  # "class folders" | "train/test folders" | "train/val/test folders"
    split_dirs: dict[str, Path]  # split name ("all", or "train"/"val"/"test") -> folder holding class folders
    files: dict[str, dict[str, list[Path]]] = field(default_factory=dict)  # split -> class -> image files
    ignored: int = 0  # files without an image extension

    @property
    def classes(self) -> list[str]:
        return sorted({c for per in self.files.values() for c in per})


def _subdirs(d: Path) -> list[Path]:
    return sorted(p for p in d.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name not in _JUNK)


def _has_images(d: Path) -> bool:
    return any(p.suffix.lower() in IMAGE_EXTS and p.is_file() for p in d.iterdir())


def _unwrap(d: Path) -> Path:
    """Descend through lone wrapper folders (no images, one subfolder that itself holds only folders)."""
    for _ in range(4):
        subs = _subdirs(d)
        if len(subs) != 1 or _has_images(d) or _has_images(subs[0]) or not _subdirs(subs[0]):
            return d
        d = subs[0]
    return d


def find_layout(root: Path, min_classes: int = 2) -> Layout:
    """Discover the layout and the image files of ``root``; DataError when it is not a classifier dataset."""
    if not root.is_dir():
        raise DataError(f"{root} is not a folder; give a folder with one subfolder per class")
    root = _unwrap(root)
    by_name: dict[str, Path] = {}
    for sub in _subdirs(root):
        for split, names in SPLIT_NAMES.items():
            if sub.name.lower() in names and split not in by_name:
                by_name[split] = sub
    if "train" in by_name and len(by_name) > 1:
        kind = "train/val/test folders" if len(by_name) == 3 else f"{'/'.join(sorted(by_name, key=_order))} folders"
        layout = Layout(kind, {s: _unwrap(d) for s, d in sorted(by_name.items(), key=lambda kv: _order(kv[0]))})
    else:
        layout = Layout("class folders", {"all": root})
    for split, d in layout.split_dirs.items():
        layout.files[split] = _class_files(d, layout)
    _check_classes(root, layout, min_classes)
    return layout


def _order(split: str) -> int:
    return ["train", "val", "test"].index(split)


def _class_files(d: Path, layout: Layout) -> dict[str, list[Path]]:
    out: dict[str, list[Path]] = {}
    for cls in _subdirs(d):
        files: list[Path] = []
        for p in sorted(cls.iterdir()):
            if p.name.startswith("."):
                continue  # hidden files, e.g. macOS '._x.jpg' resource forks
            if p.is_dir():
                nested = sorted(q for q in p.iterdir() if q.is_file() and not q.name.startswith("."))
                files += [q for q in nested if q.suffix.lower() in IMAGE_EXTS]
                layout.ignored += sum(q.suffix.lower() not in IMAGE_EXTS for q in nested)
            elif p.suffix.lower() in IMAGE_EXTS:
                files.append(p)
            else:
                layout.ignored += 1
        if not files:
            raise DataError(f"class folder {cls} holds no image files; add images or remove the folder")
        out[cls.name] = files
    return out


def _check_classes(root: Path, layout: Layout, min_classes: int = 2) -> None:
    classes = layout.classes
    if not classes:
        raise DataError(
            f"{root} has no class folders with images; a classifier needs one subfolder per class, e.g. cats/ and dogs/"
        )
    if len(classes) < min_classes:
        raise DataError(f"{root} has only one class '{classes[0]}'; a classifier needs at least two class folders")
