"""Progressive resizing (engine/progressive.py): the first epochs train on resized batches, the rest at full size."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from convforge.data import DataConfig, load_data
from convforge.engine import TrainConfig, progressive
from convforge.engine.augment import augment_batch
from convforge.engine.loop import Trainer
from convforge.engine.progress import EpochProgress
from convforge.errors import ConfigError
from convforge.run import Run


def _trainer(tmp_path, **kw) -> Trainer:
    kw = {"model": "mnist-fast", **kw}
    cfg = TrainConfig(source="digits", batch_size=256, epochs=3, device="cpu", seed=0, **kw)
    splits = load_data(DataConfig(source="digits", split=(0.8, 0.1, 0.1)), progress=False)
    torch.manual_seed(0)
    return Trainer(cfg, Run(tmp_path / "run"), splits, log=lambda s: None)


def test_shape_keeps_the_aspect_ratio():
    assert progressive.shape(24, 32, 32) == (24, 24)
    assert progressive.shape(64, 128, 96) == (85, 64)
    assert progressive.shape(6, 8, 8) == (6, 6)
    assert progressive.shape(0.75, 32, 32) == (24, 24) and progressive.shape(0.75, 16, 12) == (12, 9)


def test_first_epochs_see_small_batches_then_full_size_and_evaluation_full_size(tmp_path):
    tr = _trainer(tmp_path, progressive_epochs=2, progressive_size=6, flip=True, crop_pad=1)
    seen: list[tuple[int, tuple[int, ...]]] = []
    tr.model.register_forward_pre_hook(
        lambda module, args: seen.append((tr.scheduler.last_epoch // tr.steps_per_epoch, tuple(args[0].shape[2:])))
    )
    with EpochProgress(3, tr.steps_per_epoch, live=False, log=lambda s: None) as bar:
        rows = [tr.train_epoch(bar) for _ in range(3)]
    sizes = {epoch: {shape for e, shape in seen if e == epoch} for epoch in range(3)}
    assert sizes == {0: {(6, 6)}, 1: {(6, 6)}, 2: {(8, 8)}}
    assert len(seen) == 3 * tr.steps_per_epoch
    assert rows[1]["train_loss"] < rows[0]["train_loss"]
    seen.clear()
    tr.measure(tr.splits.test)
    assert {shape for _, shape in seen} == {(8, 8)}


def test_the_batch_is_augmented_at_full_size_then_resized(tmp_path):
    tr = _trainer(tmp_path, progressive_epochs=1, progressive_size=6, flip=True, crop_pad=2)
    images = torch.rand(16, 1, 8, 8)
    state = tr.gen.get_state()
    out = tr.augment_images(images, torch.arange(16))
    tr.gen.set_state(state)
    expected = augment_batch(images, tr.augment, tr.gen, unit=tr.scale * 255)
    expected = F.interpolate(expected, size=(6, 6), mode="bilinear", antialias=True, align_corners=False)
    assert torch.equal(out, expected)


def test_options_are_checked(tmp_path):
    with pytest.raises(ConfigError, match="--progressive-epochs needs --progressive-size"):
        TrainConfig(progressive_epochs=2).validate()
    with pytest.raises(ConfigError, match="must be >= 0"):
        TrainConfig(progressive_epochs=-1, progressive_size=4).validate()
    with pytest.raises(ConfigError, match="--progressive-size 8 is not smaller than the 8x8 images"):
        _trainer(tmp_path, progressive_epochs=1, progressive_size=8)
    with pytest.raises(ConfigError, match="--progressive-size 0.95 is not smaller than the 8x8 images"):
        _trainer(tmp_path, progressive_epochs=1, progressive_size=0.95)  # 7.6 rounds to 8
    with pytest.raises(ConfigError, match="pools globally before its dense layers, unlike digits-cnn"):
        _trainer(tmp_path, model="digits-cnn", progressive_epochs=1, progressive_size=6)
