"""decode_image: every Pillow mode, exact pixel values, resize policies, and unreadable files."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from data_helpers import save
from PIL import Image

from convforge.data import _decode, decode_image
from convforge.data._decode import BadImage, decode_array
from convforge.errors import DataError

RED_L = 76  # Pillow's luminance of pure red: 255 * 299 / 1000


@pytest.mark.parametrize(
    "mode, color, fmt, gray, rgb",
    [
        ("RGB", (255, 0, 0), "PNG", RED_L, (255, 0, 0)),
        ("RGBA", (255, 0, 0, 255), "PNG", RED_L, (255, 0, 0)),
        ("RGBA", (255, 0, 0, 0), "PNG", 0, (0, 0, 0)),  # fully transparent -> black
        ("L", 200, "PNG", 200, (200, 200, 200)),
        ("LA", (200, 255), "PNG", 200, (200, 200, 200)),
        ("1", 1, "PNG", 255, (255, 255, 255)),
        ("CMYK", (0, 255, 255, 0), "TIFF", RED_L, (255, 0, 0)),
        ("RGB", (255, 0, 0), "BMP", RED_L, (255, 0, 0)),
        ("RGB", (255, 0, 0), "WEBP", None, None),  # lossy: shape only
        ("RGB", (255, 0, 0), "JPEG", None, None),
    ],
)
def test_modes_map_to_channels(tmp_path: Path, mode: str, color, fmt: str, gray, rgb) -> None:
    path = save(tmp_path / f"x.{fmt.lower()}", color, mode, size=(5, 4), fmt=fmt)
    one = decode_image(path, 1, (4, 5), "stretch")
    three = decode_image(path, 3, (4, 5), "stretch")
    assert one.dtype == torch.uint8 and one.shape == (1, 4, 5) and three.shape == (3, 4, 5)
    if gray is not None:
        assert (one == gray).all()
        assert (three == torch.tensor(rgb, dtype=torch.uint8)[:, None, None]).all()


def test_palette_with_transparency_and_gif(tmp_path: Path) -> None:
    p = Image.new("P", (4, 4), 1)
    p.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    p.save(tmp_path / "opaque.gif")
    p.info["transparency"] = 1
    p.save(tmp_path / "clear.png", transparency=1)
    assert (decode_image(tmp_path / "opaque.gif", 3, (4, 4), "stretch")[0] == 255).all()
    assert (decode_image(tmp_path / "clear.png", 3, (4, 4), "stretch") == 0).all()  # transparent -> black


def test_16_bit_scaled_properly(tmp_path: Path) -> None:
    a = np.array([[0, 257, 65535, 32896]], np.uint16)
    Image.fromarray(a).save(tmp_path / "deep.png")  # 16-bit grayscale PNG
    out = decode_image(tmp_path / "deep.png", 1, (1, 4), "stretch")
    assert out[0, 0].tolist() == [0, 1, 255, 128]
    Image.fromarray(a.astype(np.int32)).save(tmp_path / "deep.tif")  # mode I
    assert decode_image(tmp_path / "deep.tif", 1, (1, 4), "stretch")[0, 0].tolist() == [0, 1, 255, 128]


def test_float_tiff(tmp_path: Path) -> None:
    Image.fromarray(np.array([[0.0, 0.5, 1.0]], np.float32)).save(tmp_path / "f.tif")
    assert decode_image(tmp_path / "f.tif", 1, (1, 3), "stretch")[0, 0].tolist() == [0, 128, 255]


def test_resize_policies(tmp_path: Path) -> None:
    path = save(tmp_path / "wide.png", (0, 255, 0), size=(40, 20))
    stretch = decode_image(path, 3, (10, 10), "stretch")
    crop = decode_image(path, 3, (10, 10), "crop")
    pad = decode_image(path, 3, (10, 10), "pad")
    assert stretch.shape == crop.shape == pad.shape == (3, 10, 10)
    assert (crop[1] == 255).all() and (stretch[1] == 255).all()
    assert (pad[:, :2] == 0).all() and (pad[:, -2:] == 0).all() and (pad[1, 3:7] == 255).all()  # letterbox


def test_jpeg_draft_downscale_keeps_content(tmp_path: Path) -> None:
    path = save(tmp_path / "big.jpg", (0, 0, 255), size=(640, 480))
    out = decode_image(path, 3, (32, 32), "crop")
    assert out.shape == (3, 32, 32) and out[2].float().mean() > 240 and out[0].float().mean() < 15


def test_native_size_when_none(tmp_path: Path) -> None:
    assert decode_array(save(tmp_path / "a.png", 9, "L", size=(7, 3)), 1, None, "stretch").shape == (1, 3, 7)


@pytest.mark.parametrize(
    "content, reason",
    [(b"", "empty file (0 bytes)"), (b"hello, I am text", "not an image"), ("truncated", "corrupt or truncated")],
)
def test_bad_files(tmp_path: Path, content, reason: str) -> None:
    path = tmp_path / "bad.jpg"
    if content == "truncated":
        save(tmp_path / "full.jpg", (1, 2, 3), size=(64, 64))
        content = (tmp_path / "full.jpg").read_bytes()[:300]
    path.write_bytes(content)
    with pytest.raises(BadImage, match=re.escape(reason)):
        decode_array(path, 3, (8, 8), "stretch")
    with pytest.raises(DataError, match=f"cannot read image .*bad.jpg: {re.escape(reason)}"):
        decode_image(path, 3, (8, 8), "stretch")


def test_decompression_bomb_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = save(tmp_path / "big.png", 0, "L", size=(100, 100))
    monkeypatch.setattr(_decode, "MAX_PIXELS", 5000)  # our own limit: refused, not just warned about
    with pytest.raises(BadImage, match="too large"):
        decode_array(path, 1, (8, 8), "stretch")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2000)  # Pillow's DecompressionBombError above 2x its limit
    with pytest.raises(BadImage, match="too large"):
        decode_array(path, 1, (8, 8), "stretch")


# The stored image that EXIF orientation N turns upright: the inverse of Pillow's exif_transpose step for N.
_STORE = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def _stored(upright: Image.Image, orientation: int, path: Path, **save_kw) -> Path:
    op = _STORE[orientation]
    stored = upright if op is None else upright.transpose(op)
    exif = stored.getexif()
    exif[_decode.EXIF_ORIENTATION] = orientation
    stored.save(path, exif=exif, **save_kw)
    return path


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied(tmp_path, orientation):
    rng = np.random.default_rng(orientation)
    upright = Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8))  # 40 wide, 30 high
    path = _stored(upright, orientation, tmp_path / "x.png")
    got = decode_image(path, 3, (30, 40), "stretch")
    assert torch.equal(got, torch.from_numpy(np.asarray(upright)).permute(2, 0, 1))


def test_exif_orientation_of_a_downscaled_jpeg(tmp_path):
    """A phone photo stored sideways: the DCT draft must keep enough pixels for the upright crop."""
    yy, xx = np.mgrid[0:160, 0:240]
    upright = Image.fromarray(np.stack([xx, yy, (xx + yy) // 2], -1).astype(np.uint8))  # 240 wide, 160 high
    upright.save(tmp_path / "upright.jpg", quality=95)
    _stored(upright, 6, tmp_path / "sideways.jpg", quality=95)
    want = decode_image(tmp_path / "upright.jpg", 3, (32, 48), "crop").float()
    got = decode_image(tmp_path / "sideways.jpg", 3, (32, 48), "crop").float()
    assert got.shape == want.shape and (got - want).abs().mean() < 2
