"""Batched augmentation on the training device: no DataLoader, no per-image Python.

Flips are a masked `flip`; shift, shear and zoom are one random affine per image applied with a single
`affine_grid` + `grid_sample` call for the whole batch; crop-shift is one reflect-pad plus one gather; cutout,
brightness and contrast are element-wise with per-image random numbers. Nothing reads a value back to the host,
so the whole batch pipeline can be captured in a CUDA graph (engine/fast/graph.py).

On CUDA, a batch that is only mirrored and translated (the fast recipes') takes one Triton launch instead
(_augment_triton.py): PyTorch's flip, where, reflect pad and index gather took ~180 us of a cifar10-fast step of
2000 32x32 images, 3.4% of its kernel time (H200, epoch_profile_cifar10-fast_s14.txt). The same random draws in
the same order, the same pixels moved: the same bits.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..models import _kernels

FUSED = True  # benchmarks switch the kernel off to measure PyTorch's ops
BLOCK, WARPS = 1024, 4  # output elements per program


@dataclass(frozen=True)
class Augment:
    flip: bool = False
    shift: float = 0.0  # fraction of the image size
    shear: float = 0.0  # degrees
    zoom: float = 0.0  # fraction
    crop_pad: int = 0  # pixels: reflect-pad, then a random crop of the original size
    cutout: int = 0  # pixels: side of one zeroed square per image
    brightness: float = 0.0  # fraction of the 0..1 pixel range
    contrast: float = 0.0  # fraction

    @property
    def active(self) -> bool:
        photometric = self.brightness > 0 or self.contrast > 0
        return self.flip or self.geometric or self.crop_pad > 0 or self.cutout > 0 or photometric

    @property
    def geometric(self) -> bool:
        return self.shift > 0 or self.shear > 0 or self.zoom > 0


def augment_of(cfg) -> Augment:
    """The augmentation a TrainConfig asks for."""
    return Augment(cfg.flip, cfg.shift, cfg.shear, cfg.zoom, cfg.crop_pad, cfg.cutout, cfg.brightness, cfg.contrast)


def _uniform(n: int, bound: float, gen: torch.Generator, device: torch.device) -> torch.Tensor:
    return (torch.rand(n, generator=gen, device=device) * 2 - 1) * bound


def random_affine(n: int, aug: Augment, gen: torch.Generator, device: torch.device) -> torch.Tensor:
    """N x 2 x 3 matrices mapping output to input coordinates (in [-1, 1] units, as affine_grid expects)."""
    scale = 1 + _uniform(n, aug.zoom, gen, device)
    shear = torch.tan(_uniform(n, math.radians(aug.shear), gen, device))
    shift = _uniform(2 * n, 2 * aug.shift, gen, device).view(n, 2)  # a fraction f of the size is 2f here
    theta = torch.zeros(n, 2, 3, device=device)
    theta[:, 0, 0] = 1 / scale
    theta[:, 0, 1] = shear / scale
    theta[:, 1, 1] = 1 / scale
    theta[:, :, 2] = shift
    return theta


def crop_shift(images: torch.Tensor, pad: int, gen: torch.Generator) -> torch.Tensor:
    """Shift each image by up to `pad` pixels each way: reflect-pad, then one gather of a random window."""
    n, c, h, w = images.shape
    dev = images.device
    mode = "reflect" if pad < min(h, w) else "replicate"
    padded = F.pad(images, (pad, pad, pad, pad), mode=mode)
    top, left = _shifts(n, pad, gen, dev)
    rows = (torch.arange(h, device=dev) + top).view(n, 1, h, 1)
    cols = (torch.arange(w, device=dev) + left).view(n, 1, 1, w)
    return padded[
        torch.arange(n, device=dev).view(n, 1, 1, 1), torch.arange(c, device=dev).view(1, c, 1, 1), rows, cols
    ]


def _shifts(n: int, pad: int, gen: torch.Generator, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Each image's window corner in the padded image (N x 1 each): crop_shift's draws, which the one-launch path
    makes too."""
    top = torch.randint(0, 2 * pad + 1, (n, 1), generator=gen, device=device)
    return top, torch.randint(0, 2 * pad + 1, (n, 1), generator=gen, device=device)


def _coins(n: int, gen: torch.Generator, device: torch.device) -> torch.Tensor:
    """Which images a random flip mirrors: augment_batch's draw, which the one-launch path makes too."""
    return torch.rand(n, generator=gen, device=device) < 0.5


def cutout(images: torch.Tensor, size: int, gen: torch.Generator) -> torch.Tensor:
    """Zero (the mean, after standardizing) one size x size square per image; its centre may lie on the edge."""
    n, _, h, w = images.shape
    dev = images.device
    top = torch.randint(0, h, (n, 1, 1), generator=gen, device=dev) - size // 2
    left = torch.randint(0, w, (n, 1, 1), generator=gen, device=dev) - size // 2
    ys = torch.arange(h, device=dev).view(1, h, 1)
    xs = torch.arange(w, device=dev).view(1, 1, w)
    inside = (ys >= top) & (ys < top + size) & (xs >= left) & (xs < left + size)
    return images.masked_fill(inside.unsqueeze(1), 0.0)


def photometric(images: torch.Tensor, aug: Augment, gen: torch.Generator, unit: torch.Tensor | None) -> torch.Tensor:
    """Random brightness (+- aug.brightness of the pixel range) and contrast (x (1 +- aug.contrast)) per image.

    `unit` is one pixel-range unit in the batch's scale per channel (1/std after standardizing; 1 for 0..1).
    """
    n = images.shape[0]
    if aug.contrast > 0:
        factor = 1 + _uniform(n, aug.contrast, gen, images.device).view(n, 1, 1, 1)
        mean = images.mean(dim=(1, 2, 3), keepdim=True)
        images = (images - mean) * factor + mean
    if aug.brightness > 0:
        delta = _uniform(n, aug.brightness, gen, images.device).view(n, 1, 1, 1)
        images = images + delta * (1.0 if unit is None else unit)
    return images


def augment_batch(
    images: torch.Tensor,
    aug: Augment,
    gen: torch.Generator,
    unit: torch.Tensor | None = None,
    flip: torch.Tensor | None = None,
) -> torch.Tensor:
    """Augment a float N x C x H x W batch; `gen` lives on the batch's device so runs are reproducible.

    `flip`: which images to mirror (AlternateFlip); None draws a coin per image.
    """
    if fusable(images, aug):
        return _flip_shift(images, aug, gen, flip)
    n = images.shape[0]
    if aug.flip:
        if flip is None:
            flip = _coins(n, gen, images.device)
        images = torch.where(flip.view(n, 1, 1, 1), images.flip(3), images)
    if aug.crop_pad > 0:
        images = crop_shift(images, aug.crop_pad, gen)
    if aug.geometric:
        theta = random_affine(n, aug, gen, images.device)
        grid = F.affine_grid(theta, list(images.shape), align_corners=False)
        # border fill, as Keras' ImageDataGenerator fill_mode="nearest"
        images = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
    if aug.brightness > 0 or aug.contrast > 0:
        images = photometric(images, aug, gen, unit)
    if aug.cutout > 0:
        images = cutout(images, aug.cutout, gen)
    return images


def fusable(images: torch.Tensor, aug: Augment) -> bool:
    """Only a mirror and a reflect-padded translate, on a 4-d fp32 channels_last CUDA batch, and the checks every
    fused path shares (_kernels.may_fuse: offsets in int32, no tracing or torch.compile, Triton available)."""
    if not _mirror_and_translate_only(aug):
        return False
    if images.dim() != 4 or images.dtype != torch.float32 or aug.crop_pad >= min(images.shape[2:]):
        return False  # a translate as wide as the image pads by replicating: PyTorch's ops
    return images.is_contiguous(memory_format=torch.channels_last) and _kernels.may_fuse(FUSED, images)


def _mirror_and_translate_only(aug: Augment) -> bool:
    others = aug.geometric or aug.cutout > 0 or aug.brightness > 0 or aug.contrast > 0
    return (aug.flip or aug.crop_pad > 0) and not others


def _flip_shift(images: torch.Tensor, aug: Augment, gen: torch.Generator, flip: torch.Tensor | None) -> torch.Tensor:
    """augment_batch's mirror and crop_shift in one launch, drawing what they draw in their order."""
    n, c, h, w = images.shape
    dev = images.device
    if aug.flip and flip is None:
        flip = _coins(n, gen, dev)
    top, left = _shifts(n, aug.crop_pad, gen, dev) if aug.crop_pad else (images, images)  # unused without SHIFT
    mirrored = flip.view(torch.uint8) if aug.flip else images
    out = torch.empty_like(images, memory_format=torch.channels_last)
    _kernels.launcher(_kernel(), (_kernels.cdiv(images.numel(), BLOCK),))(
        images, out, top, left, mirrored, images.numel(), h, w, aug.crop_pad, C=c, SHIFT=bool(aug.crop_pad),
        FLIP=aug.flip, BLOCK=BLOCK, num_warps=WARPS,
    )  # fmt: skip
    return out


@functools.cache
def _kernel():
    from . import _augment_triton

    return _augment_triton.flip_shift


def compile_ahead(channels: int, aug: Augment) -> None:
    """Compile (or load from Triton's disk cache) the kernel a run with `aug` on `channels`-channel images launches,
    without running it (engine/warmup.py); nothing where it would not be launched."""
    if not _mirror_and_translate_only(aug):
        return
    f32 = torch.float32
    shift = torch.int64 if aug.crop_pad else f32
    _kernels.compile_ahead(_kernel(), f32, f32, shift, shift, torch.uint8 if aug.flip else f32, 2**20, 2**20, 2**20,
                           2**20, C=channels, SHIFT=bool(aug.crop_pad), FLIP=aug.flip, BLOCK=BLOCK, num_warps=WARPS,
                           grid=(1,))  # fmt: skip


class AlternateFlip:
    """airbench's alternating flip: each image's coin is drawn once per run, and every other epoch mirrors the
    images it did not. Over two epochs every image is seen both ways, which random coins only promise on average.
    The coins come from their own generator (seeded by the run's seed), so the run's other randoms do not move.
    """

    def __init__(self, n: int, seed: int, device: torch.device) -> None:
        coins = torch.rand(n, generator=torch.Generator().manual_seed(seed)) < 0.5
        self.coins = coins.to(device)
        self.odd = torch.zeros((), dtype=torch.bool, device=device)

    def start_epoch(self, epoch: int) -> None:
        """`epoch` counts from 0; a device fill, so the captured steps read it."""
        self.odd.fill_(epoch % 2 == 1)

    def mask(self, rows: torch.Tensor) -> torch.Tensor:
        return self.coins[rows] ^ self.odd
