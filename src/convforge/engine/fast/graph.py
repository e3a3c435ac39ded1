"""Capture K consecutive training steps (`Trainer.batch` + `Trainer.step` on full batches) in one CUDA graph.

Per epoch the host does: one copy of the epoch order into a static device buffer, one copy of the epoch's
learning rates (the scheduler's own lambdas, evaluated ahead for every full step) into a static table, then one
`replay()` per chunk of K steps. A captured chunk reads its K batches of indices and its K rows of lrs at once from
row `ptr` of those buffers (`ptr` is a device step counter the graph advances), gathers and normalizes the K batches'
images in one go (one Triton kernel, engine/fast/gather.py; element-wise: the same floats as batch by batch), runs the
K steps with the same ops in the same order as the eager loop, and adds their losses and hits into static device
sums. Afterwards the host advances the scheduler's python state by K (`advance`), so checkpoints, resume and metrics
are those of the eager loop.

Steps that do not fill a chunk (the first epoch's warm-up remainder, `full % K`, and the steps queued while the
K-step graph is captured: _ahead) replay a one-step graph; the last partial batch runs the eager reference on exactly
its rows: no padding, batchnorm never sees a padded row.
Augmentation randoms come from the trainer's CUDA generator, registered with each graph (philox offsets advance
on replay exactly as in eager code, so graph and eager draw the same numbers); augmentation runs step by step.
"""

from __future__ import annotations

import contextlib
import gc
import math
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import torch

from . import gather

if TYPE_CHECKING:
    from ..loop import Trainer
    from ..progress import EpochProgress

# Eager steps on the capture stream before capture: one creates the optimizer state, cuDNN/cuBLAS handles and
# workspaces and loads every kernel, so the capture records the steady step. Three had cost digits-cnn's epoch 1
# 112.5 instead of 103.7 ms, the same bits trained (H200, alternating runs in one process, same_recipe_ab_warmup_*.txt).
WARMUP_STEPS = 1
# Measured (H200, torch 2.11, train s of the reference recipes, 1-step graphs -> K-step graphs, cudnn.benchmark on
# in round 2): fashion mlp adam b32 2.19 -> 2.11 s, mnist digits-cnn b128 0.79 -> 0.70 s, cifar simple-cnn b32
# 3.82 -> 3.57 s. The host was not the bottleneck: the replayed GPU work is ~110 us a step for the b32 mlp, ~40
# kernels of 2-3 us each (benchmarks/step_profile.py lists them). Hence the per-chunk work below: the row/lr
# gathers, the step counter, the image gather + normalize (9 kernels) and the metric sums (6) run once per chunk;
# per step they were 8 kernels (with one lr group). Expected: ~6 kernels (~15 us) fewer per step at K ~ 10; to be
# confirmed by step_profile.py's graph kernel list (kernels/step) and gpu_us/step.
MAX_CHUNK = 32  # steps per replay: host work per step becomes ~1 us; capture costs ~K eager steps of host time
CHUNK_GPU_S = 1e-3  # aim of one replay's GPU time: far above the ~50 us of host work per replay, short capture
# No normalized float copy of the training set any more (it saved 2 kernels a step before the per-chunk gather):
# 188 MB for MNIST, 490 MB for 40k CIFAR images (plus as much again while it was built) put convforge's peak memory
# at 3.9x / 2.6x / 2.3x the plain loop's (train_speed_NVIDIA-H200_2026-11-22_final.md), over the 2x target.
_SIDE: dict[torch.device, torch.cuda.Stream] = {}  # one per device: each new stream keeps its own cuBLAS workspace


def _side_stream(device: torch.device) -> torch.cuda.Stream:
    """Warm-up and capture stream: the same one, so there is one cuBLAS workspace (32 MiB on Hopper) less."""
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


@contextlib.contextmanager
def collection_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off inside: a collection during a capture can free an earlier run's trainer
    (it and its GraphStep refer to each other), destroying its CUDA graphs and memory mid-capture. A capture behind
    queued replays once failed so, intermittently, in the GPU tests after many trainers (cudaErrorStream
    CaptureInvalidated, gpu_tests_final4_session13_*.log; the cause is this inference, not observed directly)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def capture_behind(graph: torch.cuda.CUDAGraph, pool, stream: torch.cuda.Stream, record: Callable[[], None]) -> None:
    """Capture what `record` launches into `graph` on `stream` while the current stream may still run queued replays
    (no device sync). The two streams wait on each other around the capture; that costs no host wait.

    Why: capture_begin resets the device seed and offset of each generator registered with the graph, with fills on
    `stream` outside the graph (torch 2.11). A queued replay of another graph of the same generator writes its own
    offset there and its random ops read it later. Unordered, the reset could land in between, and that replay drew
    from offset 0. Seen intermittently: graph epochs differing from eager ones with flip + crop + cutout."""
    current = torch.cuda.current_stream()
    stream.wait_stream(current)  # the reset comes after every queued replay
    with torch.cuda.stream(stream):
        graph.capture_begin(pool=pool)
        try:
            record()
        finally:
            graph.capture_end()
    current.wait_stream(stream)  # and before any later one


def add_metrics(
    loss_sum: torch.Tensor,
    hits: torch.Tensor,
    losses: list[torch.Tensor],
    logits: list[torch.Tensor],
    labels: torch.Tensor,
    batch_size: int,
    predictions: Callable[[torch.Tensor], torch.Tensor],
) -> None:
    """Add a chunk's losses (x batch size, as the eager loop) and hits into the epoch sums, counted for all its steps
    at once: ~8 kernels a chunk instead of 5 a step (Trainer.step's argmax, compare and sum, the two additions). No
    .item(): the sums are read once per epoch. (engine/warmup.py launches it once ahead, to load its kernels.)"""
    losses_t = losses[0] if len(losses) == 1 else torch.stack(losses).sum()
    loss_sum.add_(losses_t, alpha=batch_size)
    logits_t = logits[0] if len(logits) == 1 else torch.cat(logits)
    hits.add_((predictions(logits_t) == labels).sum())


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
        self.ramp = torch.arange(max(MAX_CHUNK, self.k), device=dev)  # step offsets within a chunk
        self.lr_table = torch.zeros(self.full, len(groups), device=dev)
        self.loss_sum = torch.zeros((), device=dev)
        self.hits = torch.zeros((), device=dev, dtype=torch.long)
        self.unit = trainer.scale * 255
        self.one_kernel = gather.usable(trainer.x_train, trainer.offset, max(MAX_CHUNK, self.k) * self.batch_size)
        self.graphs: dict[int, torch.cuda.CUDAGraph] = {}
        self.pool = None  # one memory pool for all graphs: they replay one at a time, on one stream
        self.warm = 0
        self.timed = False  # K picked from a replay of the one-step graph
        self.step_s = self.capture_s = 0.0  # a one-step replay's GPU time; the last capture's host time per step

    # -- the captured chunk --------------------------------------------------------------------------
    def _images(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Trainer.batch's gather and normalize, for all rows of a chunk at once (the gpu test checks equality)."""
        tr = self.tr
        return (tr.x_train[rows].float() - tr.offset) * tr.scale, tr.y_train[rows]

    def _step(self, images: torch.Tensor, labels: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The rest of Trainer.batch (augmentation, layout) on one batch of the chunk, then Trainer.update (step
        without its hit count: _sum counts the chunk's hits at once)."""
        tr = self.tr
        images = tr.augment_images(images, rows, self.unit)
        # no copy: x_train is channels_last on CUDA (Trainer.__init__), and so are gathers and element-wise ops
        return tr.update(images.contiguous(memory_format=torch.channels_last), labels)

    def _gathered(self, steps: int) -> tuple[torch.Tensor, ...]:
        """The chunk's images, labels, training-set rows and lrs (lr_table rows); `ptr` advanced past the chunk."""
        tr, bs = self.tr, self.batch_size
        if self.one_kernel:
            return gather.gather_chunk(tr.x_train, tr.y_train, self.order, self.ptr, self.lr_table, tr.offset,
                                       tr.scale, steps, bs)  # fmt: skip
        at = self.ptr + self.ramp[:steps]  # the chunk's step numbers in the epoch
        rows = self.order.view(self.full, bs).index_select(0, at).view(-1)
        lrs = self.lr_table.index_select(0, at)
        self.ptr.add_(steps)
        return *self._images(rows), rows, lrs

    def _chunk(self, steps: int, tensor_lr: bool) -> None:
        """`steps` training steps from step `ptr` on; `tensor_lr`: the optimizer reads each step's lr on the GPU."""
        bs, groups = self.batch_size, self.tr.optimizer.param_groups
        images, labels, rows, lrs = self._gathered(steps)
        losses, logits = [], []
        for i in range(steps):
            if tensor_lr:
                for g, group in enumerate(groups):
                    group["lr"] = lrs[i, g]  # captured: the replay reads this step's lr from the table row
            part = slice(i * bs, (i + 1) * bs)
            loss, out = self._step(images[part], labels[part], rows[part])
            losses.append(loss)
            logits.append(out)
        self._sum(losses, logits, labels)

    def _sum(self, losses: list[torch.Tensor], logits: list[torch.Tensor], labels: torch.Tensor) -> None:
        add_metrics(self.loss_sum, self.hits, losses, logits, labels, self.batch_size, self.tr.predictions)

    def _warmup(self) -> None:
        side = _side_stream(self.tr.device)
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            self._chunk(1, tensor_lr=False)  # the group's float lr, set by the scheduler
        torch.cuda.current_stream().wait_stream(side)
        self.warm += 1

    def _capture(self, steps: int, sync: bool = True) -> torch.cuda.CUDAGraph:
        """The `steps`-step graph. `sync=False`: captured while the GPU still runs queued replays (_ahead), without
        torch.cuda.graph's device sync and cache release; the new graph shares the pool and replays after them on
        the same stream, and capturing runs nothing."""
        groups = self.tr.optimizer.param_groups
        floats = [g["lr"] for g in groups]
        graph = torch.cuda.CUDAGraph()
        if self.tr.augment.active:
            graph.register_generator_state(self.tr.gen)
        stream = _side_stream(self.tr.device)
        if sync:
            torch.cuda.synchronize()  # host sync: once per synced graph
        start = time.perf_counter()
        try:
            with collection_paused():
                if sync:
                    with torch.cuda.graph(graph, pool=self.pool, stream=stream):
                        self._chunk(steps, tensor_lr=True)
                    torch.cuda.current_stream().wait_stream(stream)  # see capture_behind
                else:
                    capture_behind(graph, self.pool, stream, lambda: self._chunk(steps, tensor_lr=True))
        finally:
            for g, lr in zip(groups, floats):
                g["lr"] = lr
        self.capture_s = (time.perf_counter() - start) / steps
        if self.pool is None:
            self.pool = graph.pool()
        return graph

    def _ahead(self, pos: int, steps: int) -> int:
        """Queue replays of the one-step graph for the next steps, about as many as the GPU runs while the host
        captures the `steps`-step graph (host time: `steps` x the last capture's per step); returns how many. 0 (none
        queued) for a one-step capture or before the one-step graph is timed: the capture then syncs first.
        Why: digits-cnn's 6-step capture took ~20 ms of host time in its 100 ms first epoch (H200,
        graph_overhead_*.log), with nothing queued on the GPU."""
        if steps == 1 or 1 not in self.graphs or not (self.capture_s and self.step_s):
            return 0
        ahead = min(self.full - pos, math.ceil(steps * self.capture_s / self.step_s))
        for _ in range(ahead):
            self.graphs[1].replay()
        return ahead

    def _run(self, pos: int) -> int:
        """Run the next piece of the epoch from full batch `pos`; returns how many steps it took."""
        if self.warm < WARMUP_STEPS:
            self._warmup()
            return 1
        if 1 not in self.graphs:
            self.graphs[1] = self._capture(1)
            self.graphs[1].replay()  # untimed: a graph's first replay also uploads it
            return 1
        if not self.timed:
            self._replay_and_pick_k()
            self.timed = True
            return 1
        steps = self.k if self.full - pos >= self.k else 1
        if steps not in self.graphs:
            ahead = self._ahead(pos, steps)
            self.graphs[steps] = self._capture(steps, sync=not ahead)
            if ahead:
                return ahead
        self.graphs[steps].replay()
        return steps

    def _replay_and_pick_k(self) -> None:
        """Replay the one-step graph once, timed on the GPU; K steps then take about CHUNK_GPU_S.

        Its second replay: the first, which uploads the graph, read 2-4x a step's time (H200: K = 3 for digits-cnn
        and K = 2 for simple-cnn, whose steps take 0.17 and 0.14 ms in the replayed chunks). A step that already takes
        ~1 ms of GPU time (big batches) keeps K = 1: more steps per replay would only add capture time. Host sync:
        once per run.
        """
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        self.graphs[1].replay()
        end.record()
        end.synchronize()
        self.step_s = max(start.elapsed_time(end), 1e-3) / 1000
        if self.adaptive:
            self.k = chunk_steps(self.full, max(1, min(MAX_CHUNK, round(CHUNK_GPU_S / self.step_s))))

    def invalidate(self) -> None:
        """The step changed (a recipe froze a parameter: its gradient and the backward feeding it are gone): the
        next piece is one eager warm-up step (it loads what the new step launches first: a kernel loaded during a
        capture would fail it), then the step is captured afresh in the same memory pool."""
        self.graphs.clear()
        self.warm = min(self.warm, WARMUP_STEPS - 1)

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
