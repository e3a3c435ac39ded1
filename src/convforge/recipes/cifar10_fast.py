"""cifar10_fast: 84.2% mean of 2 runs (10,000 held-out JPEG images, flip TTA), 1.24 s training, H200, torch 2.11.

The 1.24 s is the warm run; the process's first run paid ~3.4 s of cuDNN autotuning (benchmark, now off).

Measured (round 2, cudnn.benchmark then on): 6 epochs 81.4% in 0.94 s, 10 epochs 85.4% in 1.55 s; lr 0.6 with
momentum 0.9: 84.2%. Far from airbench's ~94%: missing are its BN-bias lr x64 with frozen BN weights, GELU,
lookahead/EMA and alternating flip.

In the style of airbench94 (KellerJordan/cifar10-airbench) and David Page's CIFAR-10 speed runs, from their public
descriptions, own code: a frozen 2x2 patch-whitening conv (eigenvectors of the training patches' covariance,
computed at start), three conv-pool-BN blocks 64/256/256, logits scaled by 1/9 (as a head param group, exact for
SGD), label smoothing 0.2, flip + 2-pixel translate, Nesterov SGD, batch 1024, and horizontal-flip TTA in this
recipe's own test measurement (the Run's model stays a plain SpecNet; its meta keeps both accuracies).
Round 1 (no whitening, no head scale, no TTA, lr 0.8, m 0.9): 83.8% in 1.80 s (H200, torch 2.11, 3 runs).
"""

from __future__ import annotations

from typing import Any

from ..engine.fast import SETUP
from ..models import MODELS
from ._common import block, head, run_recipe
from ._tricks import flip_tta_accuracy, scale_head, whiten_first_conv

NAME = "cifar10-fast"
HYP = dict(
    model=NAME,
    solver="nesterov",
    lr=1.0,  # per batch of 1024, mean loss (the head group: x 1/81)
    momentum=0.85,
    weight_decay=5e-4,  # the head group: x 81, so lr x wd is the same
    schedule="onecycle",  # warm-up over the first 25%, then cosine down
    epochs=8,
    batch_size=1024,
    label_smoothing=0.2,
    flip=True,
    crop_pad=2,  # pixels of random translate (airbench: 2)
)
LOGIT_SCALE = 1 / 9  # airbench's output scaling
_TRAINERS: list = []  # the run's trainer, held from setup to the TTA measurement only


def setup(tr) -> None:
    whiten_first_conv(tr)
    scale_head(tr, LOGIT_SCALE)
    _TRAINERS.append(tr)


SETUP[NAME] = setup


@MODELS.register(NAME)
def network(in_shape: tuple[int, int, int], num_classes: int) -> dict[str, Any]:
    """32x32 -> whitening 2x2 conv 24 (31) -> block 64 (15) -> block 256 (7) -> block 256 (3) -> pool -> dense."""
    c = in_shape[0]
    stem = [{"conv": {"filters": 2 * c * 4, "kernel": 2, "padding": 0, "bias": False}}, "relu"]
    return {"layers": stem + block(64) + block(256) + block(256) + head()}


def train(cfg, *, source=None, **kw):
    _TRAINERS.clear()
    try:
        result = run_recipe(HYP, cfg, source=source, default_source="cifar10", held_out=0.2, **kw)
        if _TRAINERS and result.test_accuracy is not None:
            tr = _TRAINERS[-1]
            plain = result.test_accuracy
            result.test_accuracy = flip_tta_accuracy(tr, tr.splits.test)
            result.run.update_meta(test_accuracy=result.test_accuracy, test_accuracy_no_tta=plain, tta="flip")
        return result
    finally:
        _TRAINERS.clear()
