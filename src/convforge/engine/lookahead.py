"""Lookahead weight averaging (hlb-cifar10 / airbench's "lookahead EMA"), written so a CUDA graph can capture it.

Every `every` steps, once `START` of the training steps are done, an exponential moving average of the weights
(and batchnorm statistics) moves toward the live weights, and the live weights are set to the average. Its decay
grows over training, rho = 0.95**every * (step / total)**3, so the run moves fast early and averages strongly at
the end; at each epoch's last step the live weights take the average too.

Why a table: each step's two mixing weights (ema <- ema + a (w - ema), w <- w + b (ema - w)) are computed ahead on
the host for every step of the run and read on the device through a step counter, so the hook has no Python
branch and the same ops run captured or eager. At an epoch's end the weights equal the average, so a checkpoint
of the weights is the whole state: resume re-seeds the average from them and the counter from the scheduler.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

START = 0.3  # fraction of the steps before the average starts (airbench: epoch 3 of 9.9)
DECAY_BASE = 0.95
DECAY_POW = 3.0


def mixing_table(every: int, steps_per_epoch: int, total: int) -> list[tuple[float, float]]:
    """(a, b) for steps 0..total (row s: after the s-th optimizer step; row 0 unused)."""
    rows = [(0.0, 0.0)]
    started = False
    for s in range(1, total + 1):
        a = b = 0.0
        if s > START * total and s % every == 0:
            a = 1.0 - DECAY_BASE**every * (s / total) ** DECAY_POW if started else 1.0  # first: ema <- w
            b = 1.0
            started = True
        if started and s % steps_per_epoch == 0:
            b = 1.0
        rows.append((a, b))
    return rows


class Lookahead:
    """Call after each optimizer step (Trainer.after_step)."""

    def __init__(
        self, model: torch.nn.Module, steps_done: Callable[[], int], every: int, steps_per_epoch: int, total: int
    ) -> None:
        self.steps_done = steps_done  # optimizer steps taken so far (the scheduler's count: right after resume too)
        buffers = [b for b in model.buffers() if b.is_floating_point()]  # batchnorm running mean and var
        self.live = [p.data for p in model.parameters()] + buffers
        device = self.live[0].device
        self.table = torch.tensor(mixing_table(every, steps_per_epoch, total), device=device)
        self.step = torch.zeros(1, dtype=torch.long, device=device)
        self.ema: list[torch.Tensor] = []

    @torch.no_grad()
    def start_epoch(self) -> None:
        """Before an epoch's first step (outside any graph): the first time, seed the average and the step counter
        from the run's state, so a resumed run continues exactly (at an epoch's end the weights equal the average)."""
        if not self.ema:
            self.step.fill_(self.steps_done())
            self.ema = [t.clone() for t in self.live]

    @torch.no_grad()
    def __call__(self) -> None:
        if not self.ema:  # a step taken outside train_epoch (tests, studies): seed from the weights it has made
            self.start_epoch()
        self.step.add_(1)
        a, b = self.table.index_select(0, self.step).view(2).unbind()
        diff = torch._foreach_sub(self.live, self.ema)
        torch._foreach_mul_(diff, a)
        torch._foreach_add_(self.ema, diff)
        diff = torch._foreach_sub(self.ema, self.live)
        torch._foreach_mul_(diff, b)
        torch._foreach_add_(self.live, diff)
