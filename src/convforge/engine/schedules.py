"""Learning-rate schedules as pure functions of the step, so a checkpoint needs only the step count."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from .._registry import Registry
from .config import TrainConfig

# factory(cfg, steps_per_epoch, total_steps) -> multiplier(step)
SCHEDULES: Registry[Callable[[TrainConfig, int, int], Callable[[int], float]]] = Registry("schedule")


@SCHEDULES.register("constant")
def constant(cfg: TrainConfig, steps_per_epoch: int, total: int) -> Callable[[int], float]:
    return lambda step: 1.0


@SCHEDULES.register("step")
def step_decay(cfg: TrainConfig, steps_per_epoch: int, total: int) -> Callable[[int], float]:
    every = max(1, cfg.step_epochs) * steps_per_epoch
    return lambda step: cfg.gamma ** (step // every)


@SCHEDULES.register("piecewise")
def piecewise(cfg: TrainConfig, steps_per_epoch: int, total: int) -> Callable[[int], float]:
    bounds = sorted(m * steps_per_epoch for m in cfg.milestones)
    return lambda step: cfg.gamma ** sum(step >= b for b in bounds)


@SCHEDULES.register("cosine")
def cosine(cfg: TrainConfig, steps_per_epoch: int, total: int) -> Callable[[int], float]:
    return lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total) / max(1, total)))


@SCHEDULES.register("onecycle")
def onecycle(cfg: TrainConfig, steps_per_epoch: int, total: int) -> Callable[[int], float]:
    # linear warm-up over the first 25% (or warmup_epochs) from lr/25, then cosine down to ~0
    warm = int(cfg.warmup_epochs * steps_per_epoch) or max(1, int(0.25 * total))

    def f(step: int) -> float:
        if step < warm:
            return 0.04 + 0.96 * step / warm
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total - warm))))

    return f


@SCHEDULES.register("triangle")
def triangle(cfg: TrainConfig, steps_per_epoch: int, total: int) -> Callable[[int], float]:
    # airbench94's: linear from 0.2 up to 1 at 23% of the steps (or warmup_epochs), then linear down to 0.07
    warm = int(cfg.warmup_epochs * steps_per_epoch) or max(1, int(0.23 * total))

    def f(step: int) -> float:
        if step < warm:
            return 0.2 + 0.8 * step / warm
        return 1.0 - 0.93 * min(1.0, (step - warm) / max(1, total - warm))

    return f


@SCHEDULES.register("linear")
def linear(cfg: TrainConfig, steps_per_epoch: int, total: int) -> Callable[[int], float]:
    # airbench94_muon's: straight from the peak down to 0 at the last step (warmup_epochs adds a warm-up)
    return lambda step: max(0.0, 1.0 - step / max(1, total))


def make_scheduler(
    optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LambdaLR:
    total = cfg.epochs * steps_per_epoch
    base = SCHEDULES.get(cfg.schedule)(cfg, steps_per_epoch, total)
    warm = int(cfg.warmup_epochs * steps_per_epoch) if cfg.schedule not in ("onecycle", "triangle") else 0

    def multiplier(step: int) -> float:
        factor = base(step)
        return factor * min(1.0, (step + 1) / warm) if warm else factor

    return torch.optim.lr_scheduler.LambdaLR(optimizer, multiplier)
