"""precision auto: fp32 for small steps (bf16 casts cost more kernels than they save), bf16 for big ones."""

from __future__ import annotations

import pytest
import torch

from convforge.engine.loop import macs_per_image
from convforge.inference import BF16_MIN_MACS_PER_STEP, resolve_precision
from convforge.models import resolve_spec

CUDA, CPU = torch.device("cuda"), torch.device("cpu")


def test_resolve_precision():
    assert resolve_precision("auto", CUDA, BF16_MIN_MACS_PER_STEP - 1) == "fp32"
    assert resolve_precision("auto", CUDA, BF16_MIN_MACS_PER_STEP) == "bf16"
    assert resolve_precision("auto", CUDA) == "bf16"  # no model size known: the old rule
    assert resolve_precision("auto", CPU, 10**12) == "fp32"
    assert resolve_precision("bf16", CUDA, 1) == "bf16" and resolve_precision("fp32", CUDA, 10**12) == "fp32"


@pytest.mark.parametrize(
    "model, shape, batch, want",
    [
        ("mlp", (1, 28, 28), 32, "fp32"),  # the reference recipes of bench train
        ("digits-cnn", (1, 28, 28), 128, "fp32"),
        ("simple-cnn", (3, 32, 32), 32, "fp32"),
        ("mnist-fast", (1, 28, 28), 512, "bf16"),  # the fast recipes keep bf16
        ("cifar10-fast", (3, 32, 32), 1024, "bf16"),
    ],
)
def test_reference_recipes_fp32_fast_recipes_bf16(model, shape, batch, want):
    import convforge.recipes  # noqa: F401  (registers the fast recipes' models)

    spec = resolve_spec(model, in_shape=shape, num_classes=10)
    assert resolve_precision("auto", CUDA, macs_per_image(spec.layers) * batch) == want
