"""faces detect: frontal faces with the Haar cascades that ship inside opencv-python-headless (no download).

Writes each image with its faces boxed into `--out`, and with `--crop-to DIR` each face as its own PNG in
`DIR/<class>/` (default class `face`), a class folder ready for `convforge train`.
OpenCV 5 moved the Haar cascades out of the main wheel, so this needs `opencv-python-headless<5`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .._io import atomic_path
from ..errors import ConfigError, ConvforgeError, DataError
from ._common import StudyResult, render, study_dir, write_report

CASCADES = {
    "default": "haarcascade_frontalface_default.xml",
    "alt": "haarcascade_frontalface_alt.xml",
    "alt2": "haarcascade_frontalface_alt2.xml",
    "profile": "haarcascade_profileface.xml",
}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def _cv2():
    try:
        import cv2
    except ImportError:
        raise ConvforgeError("faces needs OpenCV; install it with `pip install 'opencv-python-headless<5'`") from None
    if not hasattr(cv2, "CascadeClassifier"):
        raise ConvforgeError(
            f"OpenCV {cv2.__version__} has no Haar cascades (moved out in OpenCV 5); "
            "install `pip install 'opencv-python-headless<5'`"
        )
    return cv2


def load_cascade(name: str = "default"):
    cv2 = _cv2()
    if name not in CASCADES:
        raise ConfigError(f"unknown cascade '{name}'; choose from {', '.join(CASCADES)}")
    path = Path(cv2.data.haarcascades) / CASCADES[name]
    cascade = cv2.CascadeClassifier(str(path))
    if cascade.empty():
        raise ConvforgeError(f"cannot load the Haar cascade {path}; reinstall opencv-python-headless<5")
    return cascade


def expand_paths(paths: Sequence[str | Path]) -> list[Path]:
    """Image files, and the image files inside folders (sorted); a missing path is an error."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
        elif p.is_file():
            files.append(p)
        else:
            raise DataError(f"image not found: {p}; check the path")
    if not files:
        raise DataError(f"no images found in {', '.join(map(str, paths))}; give image files or folders of them")
    return files


def read_image(path: Path):
    """BGR uint8 array; an unreadable file is a DataError naming it."""
    cv2 = _cv2()
    import numpy as np

    data = np.fromfile(str(path), dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if img is None:
        raise DataError(f"cannot read image {path}: not an image or corrupt; remove it or give another file")
    return img


def detect_faces(
    img, cascade, scale_factor: float = 1.1, min_neighbors: int = 5, min_size: int = 30
) -> list[tuple[int, int, int, int]]:
    """(x, y, w, h) boxes, largest first."""
    cv2 = _cv2()
    gray = cv2.equalizeHist(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY))
    boxes = cascade.detectMultiScale(
        gray, scaleFactor=scale_factor, minNeighbors=min_neighbors, minSize=(min_size, min_size)
    )
    return sorted((tuple(int(v) for v in b) for b in boxes), key=lambda b: -b[2] * b[3])


def _write_png(path: Path, img) -> None:
    cv2 = _cv2()
    ok, buf = cv2.imencode(".png", img)
    if not ok:
        raise ConvforgeError(f"cannot encode {path} as PNG")
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.tobytes())


def _crop(img, box: tuple[int, int, int, int], margin: float, size: int | None):
    cv2 = _cv2()
    x, y, w, h = box
    dx, dy = int(w * margin), int(h * margin)
    x0, y0 = max(0, x - dx), max(0, y - dy)
    crop = img[y0 : min(img.shape[0], y + h + dy), x0 : min(img.shape[1], x + w + dx)]
    return cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA) if size else crop


def detect(
    images: Sequence[str | Path],
    *,
    out: str | Path | None = None,
    crop_to: str | Path | None = None,
    label: str = "face",
    cascade: str = "default",
    scale_factor: float = 1.1,
    min_neighbors: int = 5,
    min_size: int = 30,
    margin: float = 0.1,
    crop_size: int | None = None,
) -> StudyResult:
    """Detect faces in each image; annotated copies in `out`, crops in `crop_to/label/`; one row per image."""
    cv2 = _cv2()
    if scale_factor <= 1:
        raise ConfigError(f"--scale-factor must be > 1, not {scale_factor}")
    files = expand_paths(images)
    clf = load_cascade(cascade)
    folder = study_dir("faces", out)
    crops_dir = Path(crop_to) / label if crop_to is not None else None
    rows: list[dict[str, Any]] = []
    for i, path in enumerate(files):
        img = read_image(path)
        boxes = detect_faces(img, clf, scale_factor, min_neighbors, min_size)
        annotated = img.copy()
        for x, y, w, h in boxes:
            cv2.rectangle(annotated, (x, y), (x + w, y + h), (0, 255, 0), max(2, img.shape[1] // 300))
        stem = f"{i:04d}-{path.stem}"
        _write_png(folder / "annotated" / f"{stem}.png", annotated)
        crops = []
        if crops_dir is not None:
            for j, box in enumerate(boxes):
                crops.append(crops_dir / f"{stem}-{j}.png")
                _write_png(crops[-1], _crop(img, box, margin, crop_size))
        rows.append(
            {
                "image": str(path),
                "faces": len(boxes),
                "boxes": [list(b) for b in boxes],
                "crops": [str(c) for c in crops],
            }
        )
    text, md = render(rows, [("image", "image", ""), ("faces", "faces", "d")])
    total = sum(r["faces"] for r in rows)
    notes = [
        f"{total} face(s) in {len(rows)} image(s); OpenCV {cv2.__version__} cascade {CASCADES[cascade]}",
        f"crops: {crops_dir}" if crops_dir else "no crops (give --crop-to DIR)",
    ]
    files_out = write_report(folder, "Face detection", md, rows, {"cascade": cascade, "total_faces": total}, notes)
    files_out["annotated"] = folder / "annotated"
    if crops_dir is not None:
        files_out["crops"] = crops_dir
    return StudyResult("faces", folder, rows, text, md, files_out, extra={"total_faces": total})
