"""Capture K consecutive training steps (`Trainer.batch` + `Trainer.step` on full batches) in one CUDA graph.

Per epoch the host does: one copy of the epoch order into a static device buffer, one copy of the epoch's
learning rates (the scheduler's own lambdas, evaluated ahead for every full step) into a static table, then one
`replay()` per chunk of K steps. Each captured step reads its batch indices and its lr from row `ptr` of those
buffers (`ptr` is a device step counter the graph advances) and adds its loss and hits into static device sums,
with the same ops in the same order as the eager loop. Afterwards the host advances the scheduler's python state
by K (`advance`), so checkpoints, resume and metrics are those of the eager loop.

Steps that do not fill a chunk (the first epoch's warm-up remainder, `full % K`) replay a one-step graph; the last
partial batch runs the eager reference on exactly its rows: no padding, batchnorm never sees a padded row.
Augmentation randoms come from the trainer's CUDA generator, registered with each graph (philox offsets advance
on replay exactly as in eager code, so graph and eager draw the same numbers).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from ..augment import augment_batch

if TYPE_CHECKING:
    from ..loop import Trainer
    from ..progress import EpochProgress

WARMUP_STEPS = 3  # eager steps on a side stream before capture (cuDNN/cuBLAS handles, optimizer state)
# Measured (H200, torch 2.11, train s of the reference recipes, 1-step graphs -> K-step graphs, cudnn.benchmark on
# in round 2): fashion mlp adam b32 2.19 -> 2.11 s, mnist digits-cnn b128 0.79 -> 0.70 s, cifar simple-cnn b32
# 3.82 -> 3.57 s. The host was not the bottleneck: the replayed GPU work is ~110 us a step for the b32 mlp.
MAX_CHUNK = 32  # steps per replay: host work per step becomes ~1 us; capture costs ~K eager steps of host time
CHUNK_GPU_S = 1e-3  # aim of one replay's GPU time: far above the ~50 us of host work per replay, short capture
NORMALIZED_MAX_BYTES = 2 << 30  # keep a float copy of the training set (saves 3 kernels a step) up to 2 GiB
_SIDE: dict[torch.device, torch.cuda.Stream] = {}  # one per device: each new stream keeps its own cuBLAS workspace


def _side_stream(device: torch.device) -> torch.cuda.Stream:
    if device not in _SIDE:
        _SIDE[device] = torch.cuda.Stream(device)
    return _SIDE[device]


def graph_safe(trainer: Trainer) -> str:
    """Why this trainer's step cannot be captured ('' when it can)."""
    from .. import distributed

    if distributed.world_size() > 1 or isinstance(trainer.model, torch.nn.parallel.DistributedDataParallel):
        return "several processes (DDP all-reduce is not captured here)"
    if trainer.augment.active and not hasattr(torch.cuda.CUDAGraph, "register_generator_state"):
        return f"torch {torch.__version__} cannot capture a custom generator (augmentation)"
    if len(trainer.y_train) < trainer.cfg.batch_size:
        return "fewer training images than one batch"
    if not isinstance(trainer.scheduler, torch.optim.lr_scheduler.LambdaLR):
        return "the schedule is not a LambdaLR (its lrs cannot be evaluated ahead)"
    return ""


def chunk_steps(full: int, most: int = MAX_CHUNK) -> int:
    """Steps per replay: all full batches when they fit, else a divisor of them in [most/2, most], else most."""
    if full <= most:
        return full
    return next((k for k in range(most, most // 2 - 1, -1) if full % k == 0), most)


def advance(scheduler: torch.optim.lr_scheduler.LRScheduler, steps: int) -> None:
    """`scheduler.step()` `steps` times, in one call: same last_epoch, _step_count and group lrs."""
    if steps > 1:
        scheduler.last_epoch += steps - 1
        scheduler._step_count += steps - 1
    scheduler.step()


def epoch_lrs(scheduler: torch.optim.lr_scheduler.LambdaLR, steps: int) -> list[list[float]]:
    """The group lrs of the next `steps` steps, as the scheduler will set them (base_lr * lambda(step))."""
    s0 = scheduler.last_epoch
    pairs = list(zip(scheduler.lr_lambdas, scheduler.base_lrs))
    return [[base * lam(s0 + i) for lam, base in pairs] for i in range(steps)]


class GraphStep:
    """Runs an epoch's full batches as replays of captured K-step graphs; `train_epoch` mirrors the eager loop."""

    def __init__(self, trainer: Trainer, max_chunk: int | None = None) -> None:
        self.tr = trainer
        self.batch_size = trainer.cfg.batch_size
        self.full = len(trainer.y_train) // self.batch_size  # full batches per epoch
        self.adaptive = max_chunk is None  # K from the one-step graph's measured GPU time (else fixed: tests)
        self.k = chunk_steps(self.full, max_chunk or MAX_CHUNK)
        dev = trainer.device
        groups = trainer.optimizer.param_groups
        self.order = torch.zeros(self.full * self.batch_size, dtype=torch.long, device=dev)
        self.ptr = torch.zeros(1, dtype=torch.long, device=dev)
        self.lr_table = torch.zeros(self.full, len(groups), device=dev)
        self.lrs = [torch.tensor(float(g["lr"]), device=dev) for g in groups]
        self.loss_sum = torch.zeros((), device=dev)
        self.hits = torch.zeros((), device=dev, dtype=torch.long)
        self.unit = trainer.scale * 255
        self.x_norm = None
        if trainer.x_train.numel() * 4 <= NORMALIZED_MAX_BYTES:  # same ops as Trainer.batch, so the same floats
            chunks = [(c.float() - trainer.offset) * trainer.scale for c in trainer.x_train.split(8192)]
            self.x_norm = torch.cat(chunks)
        self.graphs: dict[int, torch.cuda.CUDAGraph] = {}
        self.warm = 0

    # -- the captured step ---------------------------------------------------------------------------
    def _batch(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Trainer.batch on a pre-normalized copy (the gpu test checks it equals the eager step)."""
        tr = self.tr
        if self.x_norm is None:
            return tr.batch(rows)
        images = self.x_norm[rows]
        if tr.augment.active:
            images = augment_batch(images, tr.augment, tr.gen, unit=self.unit)
        return images.contiguous(memory_format=torch.channels_last), tr.y_train[rows]

    def _body(self) -> None:
        rows = self.order.view(self.full, self.batch_size).index_select(0, self.ptr).view(-1)
        lr_row = self.lr_table.index_select(0, self.ptr).view(-1)
        for g, t in enumerate(self.lrs):
            t.copy_(lr_row[g])  # read by the optimizer while captured; the eager steps use the group's float
        self.ptr.add_(1)
        loss, hits = self.tr.step(*self._batch(rows))
        self.loss_sum.add_(loss, alpha=self.batch_size)  # as the eager loop: no .item(), read once per epoch
        self.hits.add_(hits)

    def _warmup(self) -> None:
        side = _side_stream(self.tr.device)
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            self._body()
        torch.cuda.current_stream().wait_stream(side)
        self.warm += 1

    def _capture(self, steps: int) -> torch.cuda.CUDAGraph:
        groups = self.tr.optimizer.param_groups
        floats = [g["lr"] for g in groups]
        graph = torch.cuda.CUDAGraph()
        if self.tr.augment.active:
            graph.register_generator_state(self.tr.gen)
        torch.cuda.synchronize()  # host sync: once per graph (two per run)
        try:
            for g, t in zip(groups, self.lrs):
                g["lr"] = t  # the captured optimizer reads lr from this tensor on every replay
            with torch.cuda.graph(graph):
                for _ in range(steps):
                    self._body()
        finally:
            for g, lr in zip(groups, floats):
                g["lr"] = lr
        return graph

    def _run(self, pos: int) -> int:
        """Run the next piece of the epoch from full batch `pos`; returns how many steps it took."""
        if self.warm < WARMUP_STEPS:
            self._warmup()
            return 1
        if 1 not in self.graphs:
            self.graphs[1] = self._capture(1)
            self._replay_and_pick_k()
            return 1
        steps = self.k if self.full - pos >= self.k else 1
        if steps not in self.graphs:
            self.graphs[steps] = self._capture(steps)
        self.graphs[steps].replay()
        return steps

    def _replay_and_pick_k(self) -> None:
        """Replay the one-step graph once, timed on the GPU; K steps then take about CHUNK_GPU_S.

        A step that already takes ~1 ms of GPU time (big batches) keeps K = 1: more steps per replay would only add
        capture time. Host sync: once per run.
        """
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        self.graphs[1].replay()
        end.record()
        if self.adaptive:
            end.synchronize()
            step_s = max(start.elapsed_time(end), 1e-3) / 1000
            self.k = chunk_steps(self.full, max(1, min(MAX_CHUNK, round(CHUNK_GPU_S / step_s))))

    # -- the epoch -----------------------------------------------------------------------------------
    def start_epoch(self, order: torch.Tensor) -> None:
        self.order.copy_(order[: self.order.numel()])
        self.ptr.zero_()
        self.loss_sum.zero_()
        self.hits.zero_()
        self.lr_table.copy_(torch.tensor(epoch_lrs(self.tr.scheduler, self.full)))  # one host-to-device copy

    def train_epoch(self, order: torch.Tensor, progress: EpochProgress) -> dict[str, float]:
        """Trainer.train_epoch with K steps per replay: same steps, schedule and metrics; checks once per chunk."""
        tr = self.tr
        self.start_epoch(order)
        pos = seen = 0
        stopped = False
        while pos < self.full and not stopped:
            steps = self._run(pos)
            advance(tr.scheduler, steps)
            pos += steps
            seen += steps * self.batch_size
            stopped = tr.out_of_time()
            self._report(progress, pos, seen)
        tail = order[self.full * self.batch_size :]
        if tail.numel() and not stopped:  # the partial batch: the eager reference on exactly its rows
            loss, hits = tr.step(*tr.batch(tail))
            tr.scheduler.step()
            self.loss_sum.add_(loss, alpha=len(tail))
            self.hits.add_(hits)
            seen += len(tail)
            self._report(progress, pos + 1, seen)
        return tr.par.epoch_metrics(self.loss_sum, self.hits, seen)  # one host sync

    def _report(self, progress: EpochProgress, step: int, seen: int) -> None:
        if progress.wants_metrics():  # host sync, at most twice a second, only with a live bar
            progress.step(step, (self.loss_sum / seen).item(), self.hits.item() / seen, seen)
        else:
            progress.step(step)
