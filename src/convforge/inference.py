"""Batched forward passes over uint8 image tensors, shared by training (validation), evaluate and predict."""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

from .errors import ConvforgeError


def resolve_device(name: str = "auto") -> torch.device:
    """auto -> cuda when present; asking for cuda without one is a ConvforgeError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConvforgeError(f"--device {name} was asked for but no CUDA GPU is available; use --device cpu")
        index = torch.device(name).index or 0
        if index >= torch.cuda.device_count():
            raise ConvforgeError(
                f"--device {name}: only {torch.cuda.device_count()} GPU(s) here; use cuda:0..cuda:"
                f"{torch.cuda.device_count() - 1}"
            )
    elif name != "cpu":
        raise ConvforgeError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N")
    return torch.device(name)


def resolve_precision(precision: str, device: torch.device) -> str:
    """auto -> bf16 autocast on CUDA, fp32 on CPU; an explicit choice stays.

    Measured (benchmarks/results/step_profile_NVIDIA-H200_2026-11-22.md, GPU us per replayed step, bf16 vs fp32 with
    TF32 convolutions): mnist digits-cnn b128 369 vs 454, fashion mlp b32 106 vs 107, cifar simple-cnn b32 302 vs
    317, and bf16 ahead at every batch size from 32 to 2048: fp32 for small steps (tried) saved nothing.
    """
    if precision != "auto":
        return precision
    return "bf16" if device.type == "cuda" else "fp32"


def autocast(device: torch.device, precision: str):
    """bf16 autocast on GPU for precision auto/bf16; fp32 everywhere else (resolve_precision picks for a model)."""
    use_bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda")
    if use_bf16:
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def scale_factors(mean: list[float], std: list[float], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel (offset, scale) so that float input = (uint8 - offset) * scale."""
    m = torch.tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1) * 255
    s = torch.tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1) * 255
    return m, 1 / s


@torch.no_grad()
def batched_logits(
    model: torch.nn.Module,
    images: torch.Tensor,
    mean: list[float],
    std: list[float],
    *,
    batch_size: int = 256,
    device: torch.device | None = None,
    precision: str = "fp32",
) -> torch.Tensor:
    """Logits (float32, on `device`) for uint8 N x C x H x W images, in batches."""
    device = device or next(model.parameters()).device
    offset, scale = scale_factors(mean, std, device)
    was_training = model.training
    model.eval()
    outs = []
    for start in range(0, images.shape[0], batch_size):
        batch = images[start : start + batch_size].to(device, non_blocking=True)
        with autocast(device, precision):
            outs.append(model((batch.float() - offset) * scale).float())
    model.train(was_training)
    if not outs:
        return torch.zeros(0, 1, device=device)
    return torch.cat(outs)


def probabilities(logits: torch.Tensor, output: str) -> torch.Tensor:
    """Class probabilities N x K; a sigmoid (binary) head's one logit becomes two columns [1-p, p]."""
    if output == "sigmoid":
        p = torch.sigmoid(logits[:, 0])
        return torch.stack([1 - p, p], dim=1)
    return F.softmax(logits, dim=1)
