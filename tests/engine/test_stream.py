"""Streaming training images from the host (engine/stream.py): same batches as the resident set, same training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import convforge
from convforge.data import DataConfig, decode_image, load_data, split_files
from convforge.engine import TrainConfig
from convforge.engine.stream import EncodedJpegs, HostRows, open_stream, resolve_placement
from convforge.errors import ConfigError

# CPU: libjpeg-turbo (torchvision) + torch antialiased bilinear vs libjpeg-turbo (Pillow, DCT draft) + Pillow's 8-bit
# bilinear. Measured on these photo-like images: mean |diff| 0.3-0.6 of 255 levels (max 50 at sharp edges); bounded
# at 1.5 (GPU: nvjpeg's IDCT and chroma upsampling may differ a little more, bounded at 3).
JPEG_MEAN_ABS_TOL = 1.5


def photo(rng: np.random.Generator, w: int, h: int, k: int) -> Image.Image:
    """Smooth colour gradients, a class-coloured blob and mild noise: JPEG-friendly like a photo."""
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    img = np.stack([200 * xx, 200 * yy, 120 + 60 * np.sin(6 * xx + k)], -1)
    cy, cx = rng.integers(h // 4, 3 * h // 4), rng.integers(w // 4, 3 * w // 4)
    img[max(cy - h // 6, 0) : cy + h // 6, max(cx - w // 6, 0) : cx + w // 6] = [40 + 160 * (k % 2), 60, 200 - 80 * k]
    img += rng.normal(0, 4, img.shape)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def make_photos(
    root: Path, ext: str, per_class: int = 12, classes: int = 2, seed: int = 0, orientations: bool = False
) -> Path:
    """Class folders of photo-like files; `orientations`: file i carries EXIF orientation i % 8 + 1."""
    rng = np.random.default_rng(seed)
    sizes = [(40, 30), (30, 40), (48, 48), (52, 36), (33, 27)]
    for k in range(classes):
        (root / f"c{k}").mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            w, h = sizes[(i + k) % len(sizes)]
            im = photo(rng, w, h, k)
            im = im.convert("L") if i % 5 == 4 else im  # a few grayscale files among colour ones
            exif = im.getexif()
            if orientations:
                exif[0x0112] = i % 8 + 1
            im.save(root / f"c{k}" / f"{i:03d}{ext}", quality=92, exif=exif)
    return root


def data_cfg(root: Path, cache: Path, **kw) -> DataConfig:
    return DataConfig(source=str(root), cache_dir=str(cache), image_size=(24, 24), **kw)


def streamed(root: Path, cache: Path, placement: str = "stream", device: str = "cpu", **kw):
    """(splits, streamer, batches): every training batch of one epoch, streamed, with its rows."""
    dc = data_cfg(root, cache, **kw)
    splits = load_data(dc, progress=False)
    cfg = TrainConfig(source=str(root), data_placement=placement, batch_size=8, resize=dc.resize)
    dev = torch.device(device)
    stream = open_stream(cfg, splits, dev, dc, log=lambda s: None)
    order = stream.plan(torch.randperm(len(splits.train), generator=torch.Generator().manual_seed(1)).to(dev))
    batches = [(idx, *stream.take(idx)) for idx in order.split(8)]
    return splits, stream, batches


def test_png_folder_streams_exactly_the_resident_rows(tmp_path):
    root = make_photos(tmp_path / "png", ".png")
    splits, stream, batches = streamed(root, tmp_path / "cache", resize="crop")
    assert isinstance(stream.source, HostRows)  # not JPEG: the decoded rows themselves
    assert sum(len(i) for i, _, _ in batches) == len(splits.train)
    for idx, images, labels in batches:
        assert torch.equal(images, splits.train.images[idx]) and torch.equal(labels, splits.train.labels[idx])


@pytest.mark.parametrize(("resize", "channels"), [("stretch", 3), ("crop", 3), ("pad", 3), ("crop", 1)])
def test_jpeg_folder_decodes_close_to_the_resident_rows(tmp_path, resize, channels):
    root = make_photos(tmp_path / "jpg", ".jpg")
    splits, stream, batches = streamed(root, tmp_path / "cache", resize=resize, channels=channels)
    assert isinstance(stream.source, EncodedJpegs) and stream.source.is_jpeg.all()
    for idx, images, labels in batches:
        resident = splits.train.images[idx]
        assert images.shape == resident.shape and images.dtype == torch.uint8
        diff = (images.float() - resident.float()).abs()
        assert diff.mean() < JPEG_MEAN_ABS_TOL, f"{resize}: mean |diff| {diff.mean():.2f}"
        assert torch.equal(labels, splits.train.labels[idx])


def test_exif_orientation_streams_like_the_resident_rows(tmp_path):
    """nvjpeg/libjpeg ignore EXIF orientation: the streamer turns each image as Pillow's exif_transpose does."""
    root = make_photos(tmp_path / "jpg", ".jpg", orientations=True)
    splits, stream, batches = streamed(root, tmp_path / "cache", resize="crop")
    assert set(stream.source.orientation.tolist()) == set(range(1, 9))
    for idx, images, _ in batches:  # non-square photos cropped square: a wrong turn moves the crop (mean diff > 10)
        diff = (images.float() - splits.train.images[idx].float()).abs()
        assert diff.mean() < JPEG_MEAN_ABS_TOL


def test_non_jpeg_rows_fall_back_to_their_decoded_pixels(tmp_path):
    root = make_photos(tmp_path / "mixed", ".jpg")
    Image.new("RGB", (30, 20), (10, 200, 30)).save(root / "c0" / "zz.png")
    splits, stream, batches = streamed(root, tmp_path / "cache")
    files = split_files(data_cfg(root, tmp_path / "cache"), splits)["train"]
    png = [i for i, f in enumerate(files) if f.suffix == ".png"]
    assert png and not stream.source.is_jpeg[png].any()
    for idx, images, _ in batches:
        for j, row in enumerate(idx.tolist()):
            if row in png:
                assert torch.equal(images[j], splits.train.images[row])


def test_split_files_match_the_decoded_rows(tmp_path):
    root = make_photos(tmp_path / "png", ".png", per_class=9, classes=3)
    (root / "c1" / "broken.png").write_bytes(b"not an image")  # skipped by load_data, so not in the lists
    dc = data_cfg(root, tmp_path / "cache", split=(0.6, 0.2, 0.2), seed=3)
    splits = load_data(dc, progress=False)
    files = split_files(dc, splits)
    for name in ("train", "val", "test"):
        part = getattr(splits, name)
        assert len(files[name]) == len(part) > 0
        for path, image in zip(files[name], part.images, strict=True):
            assert torch.equal(decode_image(path, 3, (24, 24), "stretch"), image)
    assert split_files(DataConfig(source="digits"), load_data(DataConfig(source="digits"), progress=False)) is None


def test_split_files_of_given_train_test_folders(tmp_path):
    make_photos(tmp_path / "tt" / "train", ".png", per_class=8)
    make_photos(tmp_path / "tt" / "test", ".png", per_class=3, seed=1)
    dc = data_cfg(tmp_path / "tt", tmp_path / "cache")
    splits = load_data(dc, progress=False)
    files = split_files(dc, splits)
    assert all(p.parts[-3] == "test" for p in files["test"]) and len(files["test"]) == 6
    assert all(p.parts[-3] == "train" for p in files["train"] + files["val"])


def test_streamed_training_equals_resident_training_on_cpu(tmp_path):
    root = make_photos(tmp_path / "png", ".png")
    common = dict(
        epochs=2, batch_size=8, image_size=(24, 24), cache_dir=str(tmp_path / "cache"), device="cpu", flip=True,
        progress=False, log=lambda s: None, model="digits-cnn",
    )  # fmt: skip
    resident = convforge.train(str(root), data_placement="device", out=str(tmp_path / "a"), **common)
    pinned = convforge.train(str(root), data_placement="pinned", out=str(tmp_path / "b"), **common)
    assert [r["train_loss"] for r in pinned.history] == [r["train_loss"] for r in resident.history]


def test_train_with_stream_placement_writes_a_working_run(tmp_path):
    root = make_photos(tmp_path / "jpg", ".jpg", per_class=16)
    lines: list[str] = []
    result = convforge.train(
        str(root), data_placement="stream", device="cpu", epochs=3, batch_size=8, image_size=(24, 24),
        cache_dir=str(tmp_path / "cache"), out=str(tmp_path / "run"), progress=False, log=lines.append,
    )  # fmt: skip
    assert any("data placement stream" in s and "JPEG" in s for s in lines)
    assert (result.run.path / "model.safetensors").is_file() and result.test_accuracy is not None
    rows = convforge.predict(result.run.path, [root / "c0" / "000.jpg"], device="cpu")
    assert rows[0]["class"] in ("c0", "c1")


def test_auto_placement_keeps_small_sets_on_the_device(monkeypatch):
    images = torch.zeros(100, 3, 32, 32, dtype=torch.uint8)  # 300 KiB
    cfg = TrainConfig()
    assert resolve_placement(cfg, images, torch.device("cpu")) == "device"
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (10 << 30, 80 << 30))
    assert resolve_placement(cfg, images, torch.device("cuda")) == "device"
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (500_000, 80 << 30))
    assert resolve_placement(cfg, images, torch.device("cuda")) == "stream"  # 300 KiB > half of 500 kB free
    assert resolve_placement(TrainConfig(data_placement="pinned"), images, torch.device("cuda")) == "pinned"


def test_placement_options_validate():
    with pytest.raises(ConfigError, match="--data-placement"):
        TrainConfig(data_placement="gpu").validate()
    with pytest.raises(ConfigError, match="--memory-fraction"):
        TrainConfig(memory_fraction=0.0).validate()
    TrainConfig(data_placement="stream", memory_fraction=1.0).validate()


@pytest.mark.gpu
def test_gpu_decode_and_prefetch_match_resident_and_train(tmp_path):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    root = make_photos(tmp_path / "jpg", ".jpg", per_class=40)
    splits, stream, batches = streamed(root, tmp_path / "cache", device="cuda", resize="crop")
    assert stream.side is not None and isinstance(stream.source, EncodedJpegs)
    for idx, images, labels in batches:
        assert images.is_cuda and labels.is_cuda
        diff = (images.float().cpu() - splits.train.images[idx].float()).abs()
        assert diff.mean() < 3.0, f"nvjpeg: mean |diff| {diff.mean():.2f}"
        assert torch.equal(labels.cpu(), splits.train.labels[idx])
    pinned = streamed(root, tmp_path / "cache", placement="pinned", device="cuda", resize="crop")[2]
    for idx, images, _ in pinned:
        assert torch.equal(images.cpu(), splits.train.images[idx])
    result = convforge.train(
        str(root), data_placement="stream", device="cuda", epochs=1, batch_size=16, image_size=(24, 24),
        cache_dir=str(tmp_path / "cache"), out=str(tmp_path / "run"), progress=False, log=lambda s: None,
    )  # fmt: skip
    assert result.history[0]["train_loss"] > 0 and (result.run.path / "model.safetensors").is_file()
