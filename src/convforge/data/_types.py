"""The in-memory shapes that data/ hands up: uint8 image sets and the three splits."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch


@dataclass
class ImageSet:
    """Images as uint8 N x C x H x W (contiguous, CPU) with int64 labels indexing ``classes``."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @classmethod
    def from_numpy(cls, images: np.ndarray, labels: np.ndarray, classes: list[str]) -> ImageSet:
        imgs = torch.from_numpy(np.ascontiguousarray(images, dtype=np.uint8))
        return cls(imgs, torch.from_numpy(np.asarray(labels, dtype=np.int64).copy()), list(classes))

    def subset(self, index: np.ndarray) -> ImageSet:
        idx = torch.from_numpy(np.asarray(index, dtype=np.int64))
        return ImageSet(self.images[idx].contiguous(), self.labels[idx].contiguous(), list(self.classes))

    def counts(self) -> dict[str, int]:
        """Images per class name (every class listed, zeros included)."""
        n = torch.bincount(self.labels, minlength=len(self.classes)).tolist()
        return {c: int(k) for c, k in zip(self.classes, n, strict=True)}


@dataclass
class DataSplits:
    """train / val / test sets over one class list; ``info`` is JSON-able (source, split, counts, skipped...)."""

    train: ImageSet
    val: ImageSet
    test: ImageSet
    classes: list[str]
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class Prepared:
    """What a source hands to the splitter: either ``all`` (split by ratio) or ``train``/``test`` (and maybe
    ``val``) as given by the source, plus the source's info (files used, layout, skipped, preprocessing)."""

    parts: dict[str, ImageSet]
    classes: list[str]
    info: dict[str, Any] = field(default_factory=dict)
