"""The fused cross-entropy (engine/cross_entropy.py) against PyTorch's path, forward + backward of bf16 logits in a
CUDA graph (20 calls a replay), per rows x classes and per launch shape (elements a loop iteration / warps).

  PYTHONPATH=src python3 benchmarks/cross_entropy_speed.py > benchmarks/results/cross_entropy_speed_<device>.txt
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from _graph_timing import captured, replay_us

from convforge.engine import cross_entropy as ce

SHAPES = [(32, 10), (128, 10), (256, 10), (1024, 10), (32, 100), (128, 100)]
LAUNCHES = [(4096, 4), (256, 4), (256, 8), (512, 4), (512, 8), (1024, 8), (2048, 8)]


def graph_us(fn, reps: int = 200, calls: int = 20) -> float:
    """us per call of fn, replayed in a CUDA graph of `calls` calls."""
    return replay_us(captured(lambda: [fn() for _ in range(calls)]), reps) / calls


def pytorch_step(logits: torch.Tensor, labels: torch.Tensor) -> None:
    torch.autograd.grad(F.cross_entropy(logits.float(), labels), logits)


def fused_step(logits: torch.Tensor, labels: torch.Tensor) -> None:
    torch.autograd.grad(ce.FusedCrossEntropy.apply(logits, labels, 0.0), logits)


def main() -> None:
    print(f"# {torch.cuda.get_device_name()}, torch {torch.__version__}: us per forward + backward")
    kept = ce.BLOCK_ELEMENTS, ce.WARPS
    for rows, classes in SHAPES:
        logits = torch.randn(rows, classes, device="cuda", dtype=torch.bfloat16, requires_grad=True)
        labels = torch.randint(0, classes, (rows,), device="cuda")
        line = [f"{rows}x{classes} pytorch {graph_us(functools.partial(pytorch_step, logits, labels)):.2f}"]
        for elements, warps in LAUNCHES:
            ce.BLOCK_ELEMENTS, ce.WARPS = elements, warps
            line.append(f"{elements}/{warps} {graph_us(functools.partial(fused_step, logits, labels)):.2f}")
        print("  ".join(line), flush=True)
    ce.BLOCK_ELEMENTS, ce.WARPS = kept


if __name__ == "__main__":
    main()
