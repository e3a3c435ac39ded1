"""fashion_mnist_fast: 93.77% mean of 5 runs (official test set), 2.37 s training after the first run in a process (3.19
s) with the fused loss (its first launch shape) and the one-kernel chunk gather (H200,
train_speed_*_gather_ce_fashion.md); before them 93.73% in 2.49-2.50 s (first run 3.41 s), H200, torch 2.11, with the
fused batchnorm + ReLU kernels and the stem on the small-conv kernels
(benchmarks/results/train_speed_*_smalldense_fashion.md; 93.66% in 2.50 s in *_smallconv_fashion.md); 93.83% in 3.07
s before those (train_speed_*_normact_fashion_folder.md); earlier 93.75% in 4.54 s.

Measured with benchmarks/train_speed.py (train s = the epochs loop): benchmarks/results/train_speed_*.md.
"""

from __future__ import annotations

from typing import Any

from ..models import MODELS
from ._common import block, head, run_recipe

NAME = "fashion-mnist-fast"
HYP = dict(
    model=NAME,
    solver="nesterov",
    lr=0.2,  # per batch of 512, mean loss
    momentum=0.9,
    weight_decay=5e-4,
    schedule="onecycle",
    epochs=12,
    batch_size=512,
    label_smoothing=0.1,
    flip=True,  # clothes are left-right symmetric
    crop_pad=2,  # pixels of random shift
)


@MODELS.register(NAME)
def network(in_shape: tuple[int, int, int], num_classes: int) -> dict[str, Any]:
    """28x28 -> conv 64 -> block 128 (14x14) -> block 256 (7x7) -> global pool -> dense."""
    stem = [{"conv": {"filters": 64, "kernel": 3, "padding": "same", "bias": False}}, "batchnorm", "relu"]
    return {"layers": stem + block(128) + block(256) + head()}


def train(cfg, *, source=None, **kw):
    return run_recipe(HYP, cfg, source=source, default_source="fashion-mnist", **kw)
