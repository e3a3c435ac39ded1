"""Batched augmentation on the training device: no DataLoader, no per-image Python.

Flips are a masked `flip`; shift, shear and zoom are one random affine per image applied with a single
`affine_grid` + `grid_sample` call for the whole batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Augment:
    flip: bool = False
    shift: float = 0.0  # fraction of the image size
    shear: float = 0.0  # degrees
    zoom: float = 0.0  # fraction

    @property
    def active(self) -> bool:
        return self.flip or self.shift > 0 or self.shear > 0 or self.zoom > 0

    @property
    def geometric(self) -> bool:
        return self.shift > 0 or self.shear > 0 or self.zoom > 0


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


def augment_batch(images: torch.Tensor, aug: Augment, gen: torch.Generator) -> torch.Tensor:
    """Augment a float N x C x H x W batch; `gen` lives on the batch's device so runs are reproducible."""
    n = images.shape[0]
    if aug.flip:
        flip = torch.rand(n, generator=gen, device=images.device) < 0.5
        images = torch.where(flip.view(n, 1, 1, 1), images.flip(3), images)
    if aug.geometric:
        theta = random_affine(n, aug, gen, images.device)
        grid = F.affine_grid(theta, list(images.shape), align_corners=False)
        # border fill, as Keras' ImageDataGenerator fill_mode="nearest"
        images = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return images
