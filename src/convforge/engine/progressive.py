"""Progressive resizing (fastai's): the first --progressive-epochs train on batches resized to --progressive-size.

A smaller image is a quicker step for a model that pools globally, and early epochs learn coarse features that
survive the change; the later epochs and evaluation see the full size. The batch is augmented at full size, then
resized (bilinear, antialiased: each small pixel averages the big ones under it), so the augmentation's draws and
the alternating flips are the same either way. cifar10-fast, 4 + 4 seeds on an H200: 12 epochs with the first 4 at
24 px reached 90.84% in 1.11-1.16 s of training, where 12 epochs at full size had 90.57% in 1.23-1.29 s
(benchmarks/results/progressive_*_s15.txt).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from ..errors import ConfigError, ConvforgeError
from ..models import resolve_spec

if TYPE_CHECKING:
    from .config import TrainConfig
    from .loop import Trainer


def side(size: float, h: int, w: int) -> float:
    """The shorter side --progressive-size gives h x w images: `size` pixels, or below 1 that fraction of theirs."""
    return size * min(h, w) if size < 1 else size


def shape(size: float, h: int, w: int) -> tuple[int, int]:
    """(H, W) of an h x w image resized as --progressive-size says, the longer side in proportion."""
    scale = side(size, h, w) / min(h, w)
    return max(1, round(h * scale)), max(1, round(w * scale))


def check(cfg: TrainConfig, in_shape: tuple[int, ...], spec) -> None:
    """ConfigError unless --progressive-size is smaller than the images and the model's weights do not depend on the
    image size (it pools globally before its dense layers)."""
    c, h, w = in_shape
    if round(side(cfg.progressive_size, h, w)) >= min(h, w):
        raise ConfigError(f"--progressive-size {cfg.progressive_size:g} is not smaller than the {h}x{w} images: give "
                          f"fewer pixels (or a fraction below 1) or leave --progressive-epochs 0")  # fmt: skip
    small = (c, *shape(cfg.progressive_size, h, w))
    try:
        resized = resolve_spec(cfg.model, in_shape=small, num_classes=spec.num_classes)
    except ConvforgeError as e:
        raise ConfigError(f"--progressive-size {cfg.progressive_size:g}: model {cfg.model} cannot take {small[1]}x"
                          f"{small[2]} images ({e}); give more pixels") from None  # fmt: skip
    if resized.param_count != spec.param_count:
        raise ConfigError(f"--progressive-epochs needs a model that pools globally before its dense layers, unlike "
                          f"{cfg.model}; leave --progressive-epochs 0 or pick such a model")  # fmt: skip


def resized(tr: Trainer, images: torch.Tensor) -> torch.Tensor:
    """The batch as the current epoch trains on it: resized in the first --progressive-epochs, else unchanged."""
    cfg = tr.cfg
    if not cfg.progressive_epochs or tr.epoch_index() >= cfg.progressive_epochs:
        return images
    return resize(images, shape(cfg.progressive_size, *images.shape[2:]))


def resize(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """N x C x H x W images resized to `size` (bilinear, antialiased)."""
    return F.interpolate(images, size=size, mode="bilinear", antialias=True, align_corners=False)


def switch(tr: Trainer, epoch: int) -> None:
    """An epoch hook: at the first full-size epoch, a captured step (recorded at the small size) is captured again."""
    if epoch == tr.cfg.progressive_epochs and tr.fast is not None:
        tr.fast.invalidate()
