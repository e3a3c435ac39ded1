"""Training progress: a live rich bar on a terminal, one plain line per epoch otherwise."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn


class EpochProgress:
    """Shows steps within an epoch; `refresh_every_s` bounds how often the caller reads device metrics."""

    refresh_every_s = 0.5

    def __init__(self, epochs: int, steps: int, live: bool | None = None, log: Callable[[str], None] = print):
        self.epochs, self.steps, self.log = epochs, steps, log
        self.live = sys.stdout.isatty() if live is None else live
        self._bar: Progress | None = None
        self._last = 0.0

    def __enter__(self) -> EpochProgress:
        if self.live:
            self._bar = Progress(
                TextColumn("epoch {task.fields[epoch]}/{task.fields[epochs]}"),
                BarColumn(),
                TextColumn("{task.completed}/{task.total}"),
                TextColumn("loss {task.fields[loss]}  acc {task.fields[acc]}  {task.fields[speed]} img/s"),
                TimeRemainingColumn(),
                transient=True,
            )
            self._bar.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._bar:
            self._bar.__exit__(*exc)

    def start_epoch(self, epoch: int) -> None:
        self._t0 = time.perf_counter()
        if self._bar:
            self._task = self._bar.add_task(
                "train", total=self.steps, epoch=epoch, epochs=self.epochs, loss="-", acc="-", speed="-"
            )

    def wants_metrics(self) -> bool:
        """True at most every refresh_every_s seconds, and only with a live bar (reading metrics syncs)."""
        now = time.perf_counter()
        if self._bar and now - self._last > self.refresh_every_s:
            self._last = now
            return True
        return False

    def step(self, step: int, loss: float | None = None, acc: float | None = None, images: int = 0) -> None:
        if not self._bar:
            return
        fields = {}
        if loss is not None:
            speed = images / max(1e-9, time.perf_counter() - self._t0)
            fields = {"loss": f"{loss:.4f}", "acc": f"{acc:.2%}", "speed": f"{speed:,.0f}"}
        self._bar.update(self._task, completed=step, **fields)

    def end_epoch(self, line: str) -> None:
        if self._bar:
            self._bar.remove_task(self._task)
            self._bar.console.print(line)
        else:
            self.log(line)
