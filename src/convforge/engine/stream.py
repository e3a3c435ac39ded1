"""Training images that stay on the host: batches streamed to the device, the next one prefetched on a side stream.

`--data-placement` (TrainConfig.data_placement) picks where the training set lives:
- device: the uint8 set on the training device (the reference path, Trainer.x_train[idx]);
- stream: a folder of JPEGs keeps its ENCODED files in one pinned host buffer; per batch the files are decoded on the
  device (torchvision.io.decode_jpeg, batched nvjpeg) and fitted to the training size there. Other images (PNG...)
  and built-in sets stream as `pinned`;
- pinned: the decoded uint8 set stays in host memory; per batch its rows are gathered into a pinned buffer and
  copied with non_blocking=True;
- auto: device, unless the uint8 set would take more than --memory-fraction of the free GPU memory.
Validation and test sets are measured as before (batched_logits copies 512 images at a time).

Pixels: `pinned` gives exactly the resident bytes. `stream` decodes the full JPEG (nvjpeg or libjpeg-turbo) and
resizes with torch's antialiased bilinear on float, where load_data uses Pillow (DCT draft downscale, 8-bit
bilinear); the crop/pad boxes follow ImageOps.fit/pad with the crop box rounded to whole source pixels. Measured on
generated photo-like JPEGs on CPU (tests/engine/test_stream.py): mean |difference| 0.3-0.6 of 255 levels (99th
percentile 2-8, largest at sharp edges); the test bounds the mean at 1.5 (CPU) and 3 (nvjpeg). Validation, test and
prediction keep the Pillow path (the Run's preprocessing), so a streamed model trains on slightly different pixels.
A file nvjpeg cannot read (CMYK, an odd JPEG) falls back to its Pillow-decoded row, marked once, never retried.
EXIF orientation: nvjpeg ignores it, so each file's tag is read once on the host and the decoded image is turned on
the device (`orient`), as Pillow's exif_transpose does on the resident path.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..data import DataConfig, DataSplits, exif_orientation, split_files

PLACEMENTS = ("auto", "device", "stream", "pinned")
_JPEG_MAGIC = b"\xff\xd8\xff"


def resolve_placement(cfg: Any, images: torch.Tensor, device: torch.device) -> str:
    """device | stream | pinned for this run; auto streams only on CUDA, when the set would crowd free memory."""
    if cfg.data_placement != "auto":
        return cfg.data_placement
    if device.type != "cuda":
        return "device"  # host memory is the device: streaming would only add copies
    free_bytes, _ = torch.cuda.mem_get_info(device)
    return "stream" if images.numel() > cfg.memory_fraction * free_bytes else "device"


def open_stream(
    cfg: Any, splits: DataSplits, device: torch.device, data_cfg: DataConfig, log: Callable[[str], None]
) -> Streamer | None:
    """The streamer of this run's training set, or None when the set lives on the device."""
    placement = resolve_placement(cfg, splits.train.images, device)
    if placement == "device":
        return None
    train = splits.train
    source: HostRows | EncodedJpegs = HostRows(train.images, device)
    if placement == "stream":
        files = split_files(data_cfg, splits)
        if files is not None:
            jpegs = EncodedJpegs(files["train"], train.images, splits.info["preprocessing"]["resize"], device)
            source = jpegs if jpegs.is_jpeg.any() else source
    log(f"data placement {placement}: {source.describe()}")
    return Streamer(source, train.labels, device, cfg.batch_size)


# -- host sources: rows -> uint8 N x C x H x W on the device (enqueued on the current stream) -----------------------
def _pinned(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A pinned copy of a small host tensor (the caching host allocator reuses it once its copy is done)."""
    return t.pin_memory() if device.type == "cuda" else t


def to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Host -> device without a host sync (pinned staging, non_blocking)."""
    return _pinned(t, device).to(device, non_blocking=True)


class HostRows:
    """The decoded uint8 set in host memory; a batch is gathered straight into pinned staging and copied.

    The set itself is not pinned: random rows must be gathered on the host anyway, and the gather writes into a
    pinned buffer from the caching host allocator (one host copy per batch, no page-locking of the whole set).
    """

    def __init__(self, images: torch.Tensor, device: torch.device) -> None:
        self.images, self.device = images, device

    def describe(self) -> str:
        return f"{len(self.images):,} decoded images ({self.images.numel() / 2**20:,.0f} MiB) in host memory"

    def load(self, rows: torch.Tensor) -> torch.Tensor:
        if self.device.type != "cuda":
            return self.images[rows]
        staging = torch.empty((len(rows), *self.images.shape[1:]), dtype=torch.uint8, pin_memory=True)
        torch.index_select(self.images, 0, rows, out=staging)
        return staging.to(self.device, non_blocking=True)


class EncodedJpegs:
    """JPEG files as bytes in one pinned buffer; a batch is decoded on the device and fitted there."""

    def __init__(self, paths: list[Path], decoded: torch.Tensor, resize: str, device: torch.device) -> None:
        from torchvision.io import ImageReadMode

        with ThreadPoolExecutor(max_workers=16) as pool:
            blobs = list(pool.map(Path.read_bytes, paths))
            self.orientation = np.array(list(pool.map(_orientation, blobs)), dtype=np.int8)
        self.is_jpeg = np.array([b[:3] == _JPEG_MAGIC for b in blobs])  # others: their decoded row
        sizes = [len(b) if ok else 0 for b, ok in zip(blobs, self.is_jpeg, strict=True)]
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.data = torch.empty(int(self.offsets[-1]), dtype=torch.uint8, pin_memory=device.type == "cuda")
        flat = self.data.numpy()
        for i, blob in enumerate(blobs):
            if sizes[i]:
                flat[self.offsets[i] : self.offsets[i + 1]] = np.frombuffer(blob, np.uint8)
        self.fallback = HostRows(decoded, device)
        self.shape = tuple(decoded.shape[1:])
        self.resize, self.device = resize, device
        self.mode = ImageReadMode.GRAY if self.shape[0] == 1 else ImageReadMode.RGB

    def describe(self) -> str:
        n, mib = int(self.is_jpeg.sum()), self.data.numel() / 2**20
        where = "pinned host memory" if self.device.type == "cuda" else "host memory"
        return f"{n:,} JPEG files ({mib:,.0f} MiB encoded) in {where}, decoded on {self.device} per batch"

    def load(self, rows: torch.Tensor) -> torch.Tensor:
        r = rows.numpy()
        good = np.flatnonzero(self.is_jpeg[r])
        images = self._decode(r[good]) if len(good) else []
        ok = [i for i, im in enumerate(images) if im is not None]
        fitted = fit_batch([images[i] for i in ok], self.shape[1:], self.resize) if ok else None
        if len(ok) == len(r):
            return fitted
        out = self.fallback.load(rows)  # some rows are not JPEGs nvjpeg reads: their Pillow-decoded pixels
        if fitted is not None:
            out[to_device(torch.from_numpy(good[ok]), self.device)] = fitted
        return out

    def _decode(self, rows: np.ndarray) -> list[torch.Tensor | None]:
        from torchvision.io import decode_jpeg

        encoded = [self.data[self.offsets[i] : self.offsets[i + 1]] for i in rows]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torchvision 0.29 points to TorchCodec
            try:
                images = list(decode_jpeg(encoded, mode=self.mode, device=self.device))
            except RuntimeError:  # one unreadable file fails the batch: find it, remember it
                images = [self._decode_one(i, e, decode_jpeg) for i, e in zip(rows, encoded, strict=True)]
        turns = self.orientation[rows]
        return [None if im is None else orient(im, int(t)) for t, im in zip(turns, images, strict=True)]

    def _decode_one(self, row: int, encoded: torch.Tensor, decode_jpeg: Callable) -> torch.Tensor | None:
        try:
            return decode_jpeg(encoded, mode=self.mode, device=self.device)
        except RuntimeError:
            self.is_jpeg[row] = False
            return None


def _orientation(blob: bytes) -> int:
    """A JPEG's EXIF orientation from its bytes (Pillow reads the header only); 1 for anything else."""
    import io

    from PIL import Image

    if blob[:3] != _JPEG_MAGIC:
        return 1
    try:
        with Image.open(io.BytesIO(blob)) as im:
            return exif_orientation(im)
    except Exception:  # noqa: BLE001  (unreadable here: the decoder reports it, or the Pillow row is used)
        return 1


def orient(image: torch.Tensor, orientation: int) -> torch.Tensor:
    """Turn a decoded C x H x W image upright by its EXIF orientation, as ImageOps.exif_transpose."""
    if orientation in (5, 7):  # transpose / transverse: mirror along a diagonal
        image = image.transpose(1, 2)
    if orientation in (2, 3, 7):
        image = image.flip(2)
    if orientation in (3, 4, 7):
        image = image.flip(1)
    if orientation == 6:
        image = torch.rot90(image, -1, (1, 2))  # 90 degrees clockwise (Pillow's ROTATE_270)
    if orientation == 8:
        image = torch.rot90(image, 1, (1, 2))
    return image


# -- fitting on the device, as data/_decode.fit does with Pillow ----------------------------------------------------
@dataclass(frozen=True)
class _Fit:
    box: tuple[int, int, int, int]  # top, left, height, width of the source used
    size: tuple[int, int]  # what that box is resized to
    at: tuple[int, int]  # where it lands in the output (pad)


def plan_fit(hw: tuple[int, int], size: tuple[int, int], resize: str) -> _Fit:
    """The source box, resized size and offset of ImageOps.fit (crop) / ImageOps.pad (pad) / resize (stretch)."""
    (h, w), (th, tw) = hw, size
    if resize == "crop" and w / h != tw / th:
        cw, ch = (tw / th * h, h) if w / h > tw / th else (w, w * th / tw)
        top, left = round((h - ch) / 2), round((w - cw) / 2)
        return _Fit((top, left, round(ch), round(cw)), size, (0, 0))
    if resize == "pad" and w / h != tw / th:
        nh, nw = (round(h / w * tw), tw) if w / h > tw / th else (th, round(w / h * th))
        return _Fit((0, 0, h, w), (nh, nw), (round((th - nh) / 2), round((tw - nw) / 2)))
    return _Fit((0, 0, h, w), size, (0, 0))


def resize_u8(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """uint8 N x C x h x w -> N x C x H x W: antialiased bilinear (as Pillow's BILINEAR), rounded."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    y = F.interpolate(x.float(), size=size, mode="bilinear", align_corners=False, antialias=True)
    return y.round_().clamp_(0, 255).to(torch.uint8)


def fit_batch(images: list[torch.Tensor], size: tuple[int, int], resize: str) -> torch.Tensor:
    """Decoded C x h x w images of any sizes -> uint8 N x C x H x W, in order.

    Images whose fit is the same (same source box, e.g. every 4:3 photo of one size) are resized together.
    """
    groups: dict[tuple, list[int]] = {}
    for i, im in enumerate(images):
        groups.setdefault((tuple(im.shape[1:]), plan_fit(tuple(im.shape[1:]), size, resize)), []).append(i)
    pieces, order = [], []
    for (_, fit), ids in groups.items():
        t, left, h, w = fit.box
        crops = [images[i][:, t : t + h, left : left + w] for i in ids]
        x = resize_u8(torch.stack(crops) if len(crops) > 1 else crops[0][None], fit.size)
        if fit.size != tuple(size):
            canvas = x.new_zeros((len(ids), x.shape[1], *size))
            canvas[:, :, fit.at[0] : fit.at[0] + fit.size[0], fit.at[1] : fit.at[1] + fit.size[1]] = x
            x = canvas
        pieces.append(x)
        order += ids
    if len(pieces) == 1:
        return pieces[0]
    inverse = torch.empty(len(order), dtype=torch.long)
    inverse[torch.tensor(order)] = torch.arange(len(order))
    return torch.cat(pieces).index_select(0, to_device(inverse, pieces[0].device))


# -- prefetch -------------------------------------------------------------------------------------------------------
@dataclass
class _Pending:
    rows: torch.Tensor
    images: torch.Tensor
    labels: torch.Tensor
    ready: torch.cuda.Event | None


class Streamer:
    """Batches of an epoch order from a host source; on CUDA batch i+1 is loaded on a side stream during step i.

    plan(order) takes the epoch's order to the host (one host sync per epoch); take(idx) returns the batch for
    idx: the prefetched one when idx is the next planned batch, else a direct load (e.g. an unplanned index).
    """

    def __init__(self, source: Any, labels: torch.Tensor, device: torch.device, batch_size: int) -> None:
        self.source, self.labels, self.device, self.batch_size = source, labels, device, batch_size
        self.side = torch.cuda.Stream(device) if device.type == "cuda" else None
        self.planned: list[torch.Tensor] = []
        self.pending: _Pending | None = None

    def plan(self, order: torch.Tensor) -> torch.Tensor:
        host = order.cpu()  # host sync: once per epoch (the order is drawn on the device, as in the resident path)
        self.planned = list(reversed(host.split(self.batch_size)))
        self.pending = None
        self._prefetch()
        return host

    def take(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 images N x C x H x W and int64 labels on the device, for the training rows idx."""
        p = self.pending
        if p is None or idx.device.type != "cpu" or not torch.equal(p.rows, idx):
            rows = idx.cpu()  # an unplanned batch (host sync when idx lives on the device)
            return self.source.load(rows), to_device(self.labels[rows], self.device)
        self.pending = None
        if p.ready is not None:
            current = torch.cuda.current_stream(self.device)
            current.wait_event(p.ready)
            p.images.record_stream(current)  # allocated on the side stream, freed after the step that reads it
            p.labels.record_stream(current)
        self._prefetch()
        return p.images, p.labels

    def _prefetch(self) -> None:
        if not self.planned:
            return
        rows = self.planned.pop()
        if self.side is None:
            self.pending = _Pending(rows, self.source.load(rows), self.labels[rows], None)
            return
        with torch.cuda.stream(self.side):
            images, labels = self.source.load(rows), to_device(self.labels[rows], self.device)
            ready = torch.cuda.Event()
            ready.record(self.side)
        self.pending = _Pending(rows, images, labels, ready)
