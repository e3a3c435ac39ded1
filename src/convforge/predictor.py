"""Prediction on new image files with a Run's own preprocessing (decode, fit, normalize as in training)."""

from __future__ import annotations

import csv as _csv
import io
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from ._io import write_text
from .data import decode_image
from .errors import ConvforgeError, DataError
from .inference import batched_logits, probabilities, resolve_device
from .run import Run

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".pgm", ".ppm"}


def expand_paths(paths: Iterable[str | Path]) -> list[Path]:
    """Files as given, folders expanded to the image files inside them (recursively, sorted)."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise ConvforgeError(f"no image files in folder {p}; give image files or a folder that holds some")
            out += found
        elif p.is_file():
            out.append(p)
        else:
            raise ConvforgeError(f"image not found: {p}; check the path")
    if not out:
        raise ConvforgeError("no images given; name image files or folders to classify")
    return out


class Predictor:
    """A loaded Run ready to classify images: ``Predictor(run).predict(["a.png", "dir/"])``."""

    def __init__(self, run: str | Path | Run, device: str = "auto"):
        self.run = run if isinstance(run, Run) else Run.open(run)
        self.device = resolve_device(device)
        self.model = self.run.load_model(self.device)
        pre = self.run.preprocessing
        self.channels, self.size, self.resize = pre["channels"], (pre["height"], pre["width"]), pre["resize"]

    @property
    def classes(self) -> list[str]:
        return self.run.classes

    def decode(self, path: Path) -> torch.Tensor:
        try:
            return decode_image(path, self.channels, self.size, self.resize)
        except DataError:
            raise
        except Exception as e:  # any decoder failure on a user's file is a user-facing error
            raise DataError(f"cannot read image {path} ({e}); give a valid png/jpg/bmp/gif/webp/tiff file") from None

    def probabilities(self, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """Class probabilities for uint8 N x C x H x W images."""
        pre = self.run.preprocessing
        logits = batched_logits(self.model, images, pre["mean"], pre["std"], batch_size=batch_size, device=self.device)
        return probabilities(logits, self.run.output).cpu()

    def predict(self, paths: Iterable[str | Path], top_k: int = 1, batch_size: int = 256) -> list[dict[str, Any]]:
        files = expand_paths(paths)
        if top_k < 1:
            raise ConvforgeError(f"--top-k must be at least 1, not {top_k}")
        rows = []
        for start in range(0, len(files), batch_size):
            chunk = files[start : start + batch_size]
            probs = self.probabilities(torch.stack([self.decode(p) for p in chunk]), batch_size)
            values, indices = probs.topk(min(top_k, len(self.classes)), dim=1)
            for path, vals, idx in zip(chunk, values.tolist(), indices.tolist()):
                top = [(self.classes[i], round(v, 6)) for v, i in zip(vals, idx)]
                rows.append({"path": str(path), "class": top[0][0], "probability": top[0][1], "top": top})
        return rows


def write_csv(rows: list[dict[str, Any]], path: str | Path) -> None:
    buf = io.StringIO()
    writer = _csv.writer(buf)
    k = max(len(r["top"]) for r in rows)
    writer.writerow(["path"] + [f"{kind}{i + 1}" for i in range(k) for kind in ("class", "probability")])
    for r in rows:
        writer.writerow([r["path"]] + [v for pair in r["top"] for v in pair])
    write_text(path, buf.getvalue())
