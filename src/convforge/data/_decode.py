"""Robust decoding of one image file to uint8 C x H x W.

Every Pillow mode is mapped to the requested channels (1 = luminance 'L', 3 = 'RGB'):
- alpha (RGBA, LA, PA, P with transparency) is composited on BLACK, so transparent pixels become 0 like the
  zero padding of ``resize='pad'``;
- 16-bit (I;16*) is scaled to 8 bit by round(v / 257); 32-bit 'I' the same when it lies in 0..65535, else
  min-max; float 'F' is scaled by 255 when it lies in 0..1, else clipped to 0..255;
- CMYK, YCbCr, LAB, HSV, 1-bit and palette images go through Pillow's own conversion;
- an EXIF orientation tag (phone photos) is applied first, so the pixels stand as the photo is meant to be seen.
Files that cannot be read raise ``BadImage(reason)``; callers collect them as (path, reason) problems.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from ..errors import DataError

# Pillow's own default limit (about 89 M pixels); we refuse above it instead of only warning.
MAX_PIXELS = 89_478_485
Image.MAX_IMAGE_PIXELS = MAX_PIXELS
IMAGE_EXTS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
COLOUR_MODES = frozenset({"RGB", "RGBA", "RGBX", "RGBa", "P", "PA", "CMYK", "YCbCr", "LAB", "HSV"})
_RESAMPLE = Image.Resampling.BILINEAR
EXIF_ORIENTATION = 0x0112  # 1 = upright; 5-8 swap width and height


class BadImage(Exception):
    """A file that is not a readable image; ``str()`` is the reason."""


def decode_image(path: str | Path, channels: int, size: tuple[int, int], resize: str) -> torch.Tensor:
    """Decode ``path`` to a uint8 C x H x W tensor; an unreadable file is a DataError naming it."""
    try:
        return torch.from_numpy(decode_array(path, channels, size, resize))
    except BadImage as e:
        raise DataError(f"cannot read image {path}: {e}; replace or remove the file") from None


def decode_array(path: str | Path, channels: int, size: tuple[int, int] | None, resize: str) -> np.ndarray:
    """Like decode_image but numpy; ``size`` None keeps the native size."""
    path = Path(path)
    with _as_bad_image(path, "corrupt or truncated"), Image.open(path) as im:
        check_pixels(im)
        orientation = exif_orientation(im)
        if size is not None and im.format == "JPEG":
            target = size if orientation < 5 else (size[1], size[0])  # the stored image is turned by 90 degrees
            im.draft(im.mode, _draft_size(im.size, target, resize))  # DCT downscale: much faster
        im.load()
        if orientation != 1:
            im = ImageOps.exif_transpose(im)
        return fit(to_channels(im, channels), channels, size, resize)


def exif_orientation(im: Image.Image) -> int:
    """The EXIF orientation tag (1..8), 1 when absent or invalid."""
    try:
        value = im.getexif().get(EXIF_ORIENTATION, 1)
    except Exception:  # noqa: BLE001  (a broken EXIF block must not make the image unreadable)
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _unidentified(path: Path) -> str:
    # checked only on failure: a stat per file costs ~10% of a small JPEG's decode
    return "empty file (0 bytes)" if path.stat().st_size == 0 else "not an image (unknown format)"


def check_pixels(im: Image.Image) -> None:
    if im.width * im.height > MAX_PIXELS:
        raise BadImage("too large (decompression bomb?)")


def _draft_size(src_wh: tuple[int, int], size_hw: tuple[int, int], resize: str) -> tuple[int, int]:
    """The smallest (w, h) the resize still needs at full quality."""
    w, h = src_wh
    th, tw = size_hw
    if resize == "stretch":
        return (tw, th)
    scale = max(tw / w, th / h) if resize == "crop" else min(tw / w, th / h)
    return (math.ceil(w * scale), math.ceil(h * scale))


def to_channels(im: Image.Image, channels: int) -> Image.Image:
    """Any Pillow mode -> 'L' (channels=1) or 'RGB' (channels=3)."""
    target = "L" if channels == 1 else "RGB"
    mode = im.mode
    if mode.startswith("I") or mode == "F":
        im = Image.fromarray(_to_uint8(np.asarray(im)), "L")
    elif mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif mode == "PA":
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "RGBa", "La"):
        im = _on_black(im)
    return im if im.mode == target else im.convert(target)


def _on_black(im: Image.Image) -> Image.Image:
    rgba = im.convert("RGBA")
    black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
    out = Image.alpha_composite(black, rgba).convert("RGB")
    return out.convert("L") if im.mode in ("LA", "La") else out


def _to_uint8(a: np.ndarray) -> np.ndarray:
    if a.dtype.kind == "f":
        a = np.nan_to_num(a.astype(np.float64))
        a = a * 255.0 if a.size and a.min() >= 0 and a.max() <= 1 else a
        return np.clip(np.rint(a), 0, 255).astype(np.uint8)
    a = a.astype(np.int64)
    if a.size == 0 or (a.min() >= 0 and a.max() <= 65535):
        return ((a * 255 + 32767) // 65535).astype(np.uint8)  # round(v / 257)
    lo, hi = int(a.min()), int(a.max())
    return ((a - lo) * 255 // max(hi - lo, 1)).astype(np.uint8)


def fit(im: Image.Image, channels: int, size: tuple[int, int] | None, resize: str) -> np.ndarray:
    """Fit an 'L'/'RGB' image to (H, W) and return C x H x W uint8."""
    if size is not None and (im.height, im.width) != tuple(size):
        wh = (size[1], size[0])
        if resize == "crop":
            im = ImageOps.fit(im, wh, _RESAMPLE)
        elif resize == "pad":
            im = ImageOps.pad(im, wh, _RESAMPLE, color=0)
        else:
            im = im.resize(wh, _RESAMPLE)
    a = np.asarray(im, dtype=np.uint8)
    return a[None].copy() if channels == 1 else np.ascontiguousarray(a.transpose(2, 0, 1))


def fit_array(a: np.ndarray, channels: int, size: tuple[int, int] | None, resize: str) -> np.ndarray:
    """A C x H x W uint8 array (C = 1 or 3) through the same path as a decoded file (for built-in sets)."""
    im = Image.fromarray(a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0), "L" if a.shape[0] == 1 else "RGB")
    return fit(to_channels(im, channels), channels, size, resize)


def read_header(path: str | Path) -> tuple[tuple[int, int], str]:
    """((width, height), mode) from the header only; BadImage when it cannot be identified."""
    path = Path(path)
    with _as_bad_image(path, "corrupt"):
        if path.stat().st_size == 0:
            raise BadImage("empty file (0 bytes)")
        with Image.open(path) as im:
            check_pixels(im)
            return im.size, im.mode


@contextlib.contextmanager
def _as_bad_image(path: Path, corrupt: str) -> Iterator[None]:
    """Pillow's many failure types -> one BadImage with a reason a person can act on."""
    try:
        yield
    except BadImage:
        raise
    except Image.DecompressionBombError:
        raise BadImage("too large (decompression bomb?)") from None
    except Image.UnidentifiedImageError:
        raise BadImage(_unidentified(path)) from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError) as e:
        raise BadImage(f"{corrupt} ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
