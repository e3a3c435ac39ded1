"""Fast paths around the reference `Trainer.step` (STYLE rule 8): CUDA-graph capture and torch.compile.

`fast_path(trainer)` picks the mode: captured multi-step graphs when the device is CUDA and the step is graph-safe,
else None (the loop then calls the eager reference). `--cuda-graphs/--no-cuda-graphs` and `--compile` override it.
Recipe hooks by model name, on CPU and GPU alike: `MODEL_SETUP` runs on the bare model, before DDP/hybrid
wrapping and before the optimizer is made (e.g. cifar10-fast's frozen whitening conv: DDP fixes the set of trained
parameters when it wraps); `SETUP` runs once on the finished trainer, before its optimizer takes a step (e.g. param
groups).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from .graph import GraphStep, advance, chunk_steps, graph_safe

if TYPE_CHECKING:
    from ..loop import Trainer

__all__ = [
    "MODEL_SETUP",
    "SETUP",
    "GraphStep",
    "advance",
    "chunk_steps",
    "fast_path",
    "graph_safe",
    "prepare_model",
    "use_graphs",
]
SETUP: dict[str, Callable[[Trainer], None]] = {}
MODEL_SETUP: dict[str, Callable[[Trainer], None]] = {}


def prepare_model(trainer: Trainer) -> None:
    """The recipe's MODEL_SETUP hook, if any (Trainer.__init__ calls it before wrapping the model)."""
    hook = MODEL_SETUP.get(str(trainer.cfg.model))
    if hook is not None:
        hook(trainer)


def use_graphs(cfg, device: torch.device, streaming: bool = False) -> bool:
    """Graphs by default on CUDA; --no-cuda-graphs turns them off, and a CPU run never has them.

    Streamed batches (engine/stream.py) arrive from the host each step, so a streaming run is not captured.
    """
    return device.type == "cuda" and cfg.cuda_graphs is not False and not streaming


def fast_path(trainer: Trainer) -> GraphStep | None:
    """The object whose `train_epoch` the loop calls instead of its own, or None for the eager reference."""
    setup = SETUP.get(str(trainer.cfg.model))
    if setup is not None:
        setup(trainer)
    if trainer.cfg.compile:
        trainer.model.compile()  # in place: state-dict keys stay `layers.{i}...`, so the Run is unchanged
    if not use_graphs(trainer.cfg, trainer.device, streaming=getattr(trainer, "stream", None) is not None):
        return None
    why_not = graph_safe(trainer)
    if why_not:
        trainer.log(f"CUDA graphs off: {why_not}")
        return None
    # cudnn.benchmark stays off: with it, the first run in a process paid 1.5-2.9 s of autotuning (mnist-fast 4.22 s
    # vs 1.69 s for the next seed, H200, round 2), more than it saved; a CLI run is always a first run
    return GraphStep(trainer)
