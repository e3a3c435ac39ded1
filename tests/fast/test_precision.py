"""precision auto: bf16 autocast on CUDA (measured no slower than fp32 for any recipe), fp32 on CPU."""

from __future__ import annotations

import torch

from convforge.inference import resolve_precision

CUDA, CPU = torch.device("cuda"), torch.device("cpu")


def test_resolve_precision():
    assert resolve_precision("auto", CUDA) == "bf16" and resolve_precision("auto", CPU) == "fp32"
    assert resolve_precision("bf16", CUDA) == "bf16" and resolve_precision("fp32", CUDA) == "fp32"
