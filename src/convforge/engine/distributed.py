"""Several processes on PyTorch's distributed engine: launch, process group, and the loop's hooks.

- launch: `--gpus N` / `--procs N` start N workers through torch.distributed's elastic launcher (the engine of
  torchrun); under `torchrun` the env vars RANK/WORLD_SIZE/LOCAL_RANK are already set and nothing is launched.
- one process per GPU (NCCL), or CPU processes (gloo); every rank runs the same `train()`; rank 0 writes the Run.
- data parallel: DistributedDataParallel; hybrid: engine/hybrid.py (conv layers data-parallel, dense layers split).
- batches: every rank draws the same seeded permutation, pads it by wrapping to a multiple of the world size
  (as DistributedSampler does: no image is dropped, every rank runs the same number of equal steps), and takes
  its part of each global batch, so the union of the ranks' batches is the single-process batch.

The Trainer keeps its single-process shape: `Trainer.model` is the training module whose `state_dict()` is the
full, unwrapped SpecNet state (a DDP subclass, or HybridNet), and `Trainer.par` answers the loop's few questions.
"""

from __future__ import annotations

import atexit
import dataclasses
import logging
import math
import os
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from ..errors import ConfigError, ConvforgeError
from ..inference import resolve_device
from ..run import Run
from .muon import hidden_matrices
from .solvers import DEFAULT_LR

T = TypeVar("T")
FAULT_ENV = "CONVFORGE_DIST_FAULT"  # fault injection for tests: "kill:RANK:EPOCH" or "hang:RANK:EPOCH"


# -- who am I ---------------------------------------------------------------------------------------------
def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main() -> bool:
    """Rank 0 (or a single process): the one that writes the Run and prints."""
    return rank() == 0


def in_worker() -> bool:
    """Started by torchrun or by `launch`: the launcher's env vars are set."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def requested_procs(cfg) -> int:
    return cfg.procs or cfg.gpus


def should_launch(cfg) -> bool:
    return requested_procs(cfg) > 1 and not in_worker()


def _cpu(cfg) -> bool:
    return cfg.procs > 0 or cfg.device == "cpu"


def train_device(cfg) -> torch.device:
    """The training device: cuda:LOCAL_RANK in a multi-GPU worker, else --device as usual."""
    if cfg.procs > 0:
        if cfg.device.startswith("cuda"):
            raise ConfigError("--procs starts CPU processes; for GPUs use --gpus N (one process per GPU)")
        return torch.device("cpu")
    device = resolve_device(cfg.device)
    if device.type != "cuda" or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return device
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if local >= torch.cuda.device_count():
        raise ConvforgeError(
            f"local rank {local} has no GPU: this machine has {torch.cuda.device_count()}; "
            f"start at most that many processes per node (--gpus / --nproc-per-node)"
        )
    return torch.device("cuda", local)


# -- launching --------------------------------------------------------------------------------------------
def check_launch(cfg) -> None:
    n = requested_procs(cfg)
    if cfg.procs and cfg.device.startswith("cuda"):
        raise ConfigError("--procs starts CPU processes; for GPUs use --gpus N (one process per GPU)")
    if not _cpu(cfg):
        have = torch.cuda.device_count()
        if n > have:
            raise ConfigError(
                f"--gpus {n}: this machine has {have} GPU(s); use --gpus {have} or fewer, or --procs {n} for "
                f"CPU processes"
            )
    if cfg.batch_scope == "global" and cfg.batch_size % n:
        raise ConfigError(
            f"--batch-size {cfg.batch_size} cannot be split evenly over {n} processes; "
            f"use a multiple of {n} or --batch-scope per-gpu"
        )


def local_launch_config(n: int, name: str):
    """torch.distributed's launcher config for N processes on this machine (as `torchrun --standalone`)."""
    from torch.distributed.launcher.api import LaunchConfig

    return LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=n,
        run_id=f"{name}-{uuid.uuid4().hex[:8]}",
        rdzv_backend="c10d",
        rdzv_endpoint="localhost:0",  # a free port
        max_restarts=0,  # a failed rank ends the job; `--resume` continues from the last checkpoint
        monitor_interval=0.1,
        start_method="spawn",
    )


def launch(cfg, *, resume: str | Path | None, progress: bool | None, log) -> Any:
    """Run `train()` in N local processes through torch.distributed's elastic launcher; rank 0's TrainResult."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import elastic_launch

    check_launch(cfg)
    n = requested_procs(cfg)
    backend = "gloo" if _cpu(cfg) else "nccl"
    log(f"starting {n} processes ({backend}, {cfg.parallel} parallel) through torch.distributed")
    config = local_launch_config(n, "convforge")
    values = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
    quiet_agent = logging.getLogger("torch.distributed.elastic")
    level = quiet_agent.level
    quiet_agent.setLevel(logging.CRITICAL)  # its failure report is replaced by one line below
    try:
        resume_dir = None if resume is None else str(resume)
        results = elastic_launch(config, _worker)(values, resume_dir, progress, log is print)
    except ChildFailedError as e:
        raise ConvforgeError(_failure_line(e, n, cfg)) from None
    finally:
        quiet_agent.setLevel(level)
    return results[0]


def _worker(values: dict, resume: str | None, progress: bool | None, verbose: bool):
    """One rank (a spawned process): the normal `train()`, quiet except on rank 0."""
    from .config import TrainConfig
    from .loop import train

    main = os.environ.get("RANK") == "0"
    log = print if verbose and main else _quiet
    progress = progress if main else False
    try:
        if resume is not None:
            return train(resume=resume, progress=progress, log=log, **values)
        return train(TrainConfig(**values), progress=progress, log=log)
    finally:
        _destroy()


def _quiet(_: str) -> None:
    pass


def _failure_line(err, n: int, cfg) -> str:
    failed_rank, failure = _root_failure(err)
    message = failure.message
    if isinstance(message, dict):
        message = message.get("message", "")
    message = " ".join(str(message).split())
    for user_error in ("ConvforgeError: ", "ConfigError: ", "DataError: "):
        if message.startswith(user_error):
            return message[len(user_error) :]
    if failure.exitcode < 0:
        message = f"was killed by {failure.signal_name()}"
    elif "timed out" in message.lower() or "timeout" in message.lower():
        message = (
            f"waited more than {cfg.dist_timeout_s:g} s for the other ranks in a collective (one died or hung; "
            f"--dist-timeout-s sets the limit): {message[:200]}"
        )
    else:
        message = f"failed: {message[:300]}"
    line = f"distributed training stopped: rank {failed_rank} of {n} {message}; the other ranks were stopped"
    checkpoint = Path(cfg.out or "") / "checkpoints" / "last.safetensors"
    if cfg.out and checkpoint.is_file():
        line += f"; the last complete checkpoint is intact: continue with `convforge train --resume {cfg.out}`"
    return line


def _root_failure(err):
    """The failure that came first, preferring one that was not a stop signal sent by the launcher."""
    failures = sorted(err.failures.items(), key=lambda kv: kv[1].timestamp)
    for item in failures:
        if item[1].exitcode >= 0 or item[1].signal_name() not in ("SIGTERM", "SIGINT"):
            return item
    return failures[0]


# -- the process group ------------------------------------------------------------------------------------
def init_from_env(cfg) -> None:
    """Join the process group when started by torchrun or `launch` (a no-op for one process)."""
    if not in_worker() or int(os.environ["WORLD_SIZE"]) <= 1 or dist.is_initialized():
        return
    device = train_device(cfg)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    backend, timeout = ("nccl" if device.type == "cuda" else "gloo"), timedelta(seconds=cfg.dist_timeout_s)
    # device_id binds NCCL to this rank's GPU (barrier() and the communicator need not guess it from the rank)
    dist.init_process_group(backend, timeout=timeout, device_id=device if device.type == "cuda" else None)
    atexit.register(_destroy)


def _destroy() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()


def local_main_first(fn: Callable[[], T]) -> T:
    """`fn()` on each machine's local rank 0 first, then on the other ranks: the first fills the data cache
    (extraction, decoding) that the others then read, instead of every rank decoding the same images at once."""
    if world_size() == 1:
        return fn()
    first = int(os.environ.get("LOCAL_RANK", "0")) == 0
    if not first:
        barrier()
    result = fn()
    if first:
        barrier()
    return result


def trainer_config(cfg):
    """The config the Trainer sees: --batch-size per process, lr scaled by --scale-lr, no CUDA graphs (DDP)."""
    w = world_size()
    if w == 1:
        return cfg
    if cfg.batch_scope == "global":
        if cfg.batch_size % w:
            raise ConfigError(f"--batch-size {cfg.batch_size} cannot be split evenly over {w} processes")
        local = cfg.batch_size // w
    else:
        local = cfg.batch_size
    lr = cfg.lr
    if cfg.scale_lr and cfg.batch_scope == "per-gpu":
        lr = (DEFAULT_LR[cfg.solver] if lr is None else lr) * w  # linear scaling: the global batch grew w-fold
    changes: dict[str, Any] = {"batch_size": local, "lr": lr}
    if any(f.name == "cuda_graphs" for f in dataclasses.fields(cfg)):
        changes["cuda_graphs"] = False  # captured steps would hold DDP's collectives; eager DDP overlaps them
    return dataclasses.replace(cfg, **changes)


class FollowerRun(Run):
    """The Run as ranks other than 0 see it: reading works, writing does nothing (rank 0 writes)."""

    def save_weights(self, state: dict[str, torch.Tensor]) -> None:
        pass

    def update_meta(self, **fields: Any) -> None:
        pass


# -- the loop's hooks -------------------------------------------------------------------------------------
class Single:
    """One process: every hook is the identity."""

    world, rank = 1, 0

    def __init__(self, trainer) -> None:
        self.tr = trainer

    def shard(self, order: torch.Tensor) -> torch.Tensor:
        return order

    def epoch_metrics(self, loss_sum: torch.Tensor, hits: torch.Tensor, seen: int) -> dict[str, float]:
        return {"train_loss": (loss_sum / seen).item(), "train_acc": hits.item() / seen}  # host sync, once

    def any_rank(self, flag: bool) -> bool:
        return flag

    def on_main(self, fn):
        """fn(full model) evaluated on rank 0; every rank gets its result."""
        return fn(self.tr.model)


class Group(Single):
    """N processes: shard the epoch, reduce the metrics, agree on decisions, evaluate on rank 0."""

    def __init__(self, trainer) -> None:
        super().__init__(trainer)
        self.world, self.rank = world_size(), rank()
        self.epochs_started = 0
        self._full = None

    def shard(self, order: torch.Tensor) -> torch.Tensor:
        self.epochs_started += 1
        _maybe_fault(self.rank, self.epochs_started)
        # dropout masks differ between ranks and stay reproducible across --resume (a function of the epoch)
        torch.manual_seed(self.tr.cfg.seed * 1_000_003 + self.epochs_started * 1009 + self.rank)
        return shard_order(order, self.tr.cfg.batch_size * self.world, self.world, self.rank)

    def epoch_metrics(self, loss_sum: torch.Tensor, hits: torch.Tensor, seen: int) -> dict[str, float]:
        sums = torch.stack([loss_sum.double(), hits.double(), torch.tensor(float(seen), device=loss_sum.device)])
        dist.all_reduce(sums)  # once per epoch: the sums of every rank
        loss, correct, count = sums.tolist()  # host sync, once per epoch
        return {"train_loss": loss / count, "train_acc": correct / count}

    def any_rank(self, flag: bool) -> bool:
        t = torch.tensor([float(flag)], device=self.tr.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())  # host sync: only with --time-budget-s

    def on_main(self, fn):
        model = self._eval_model()
        box = [fn(model) if self.rank == 0 else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def _eval_model(self) -> nn.Module:
        model = self.tr.model
        if isinstance(model, nn.parallel.DistributedDataParallel):
            return model.module
        # hybrid: the full model, rebuilt from the gathered slices (every rank takes part in the gather)
        from ..models import build_model

        state = model.state_dict()
        if self._full is None:
            self._full = build_model(self.tr.spec).to(self.tr.device)
        self._full.load_state_dict(state)
        return self._full


class FullStateDDP(nn.parallel.DistributedDataParallel):
    """DDP whose state_dict/load_state_dict are the wrapped SpecNet's: the Run keeps the `layers.{i}` keys."""

    def state_dict(self, *args, **kwargs):
        return self.module.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        return self.module.load_state_dict(state_dict, strict=strict, assign=assign)


def parallelize(trainer) -> Single:
    """Wrap the trainer's model for its process group (before the optimizer is made) and return its hooks."""
    cfg, device = trainer.cfg, trainer.device
    w = world_size()
    if w == 1:
        return Single(trainer)
    trainer.steps_per_epoch = math.ceil(len(trainer.y_train) / (cfg.batch_size * w))
    if device.type == "cpu" and cfg.threads <= 0:
        local = int(os.environ.get("LOCAL_WORLD_SIZE", w))
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // local))  # the processes share the cores
    if cfg.parallel == "hybrid":
        from .hybrid import HybridNet

        trainer.model = HybridNet(trainer.model, device)
        split = trainer.model.full_rows  # id -> full rows of each dense slice
        if cfg.solver == "muon" and any(id(p) in split for p in hidden_matrices(trainer.model.parameters())):
            raise ConfigError(
                "--solver muon orthogonalizes whole weight matrices, and --parallel hybrid splits the hidden dense "
                "layers across processes; use --parallel data or another solver"
            )
    else:
        model = trainer.model
        if cfg.sync_bn:
            if device.type != "cuda":
                raise ConfigError("--sync-bn needs GPUs (PyTorch's SyncBatchNorm has no CPU kernel); drop it")
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        trainer.model = FullStateDDP(model, device_ids=[device.index] if device.type == "cuda" else None)
    return Group(trainer)


def shard_order(order: torch.Tensor, global_batch: int, world: int, rank: int) -> torch.Tensor:
    """This rank's part of an epoch order.

    The order is padded by wrapping around to a multiple of `world` (at most world-1 repeated images, as
    DistributedSampler), then every global batch is cut into `world` equal parts and this rank keeps part `rank`.
    """
    n = len(order)
    if n % world:
        order = order.repeat(math.ceil(world / n) + 1)[: n + (-n) % world]
    full = len(order) // global_batch * global_batch
    local = global_batch // world
    head = order[:full].view(-1, world, local)[:, rank].reshape(-1)
    tail = order[full:].view(world, -1)[rank]
    return torch.cat([head, tail])


def _maybe_fault(rank_now: int, epoch: int) -> None:
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    kind, fault_rank, fault_epoch = spec.split(":")
    if int(fault_rank) != rank_now or int(fault_epoch) != epoch:
        return
    if kind == "kill":
        os.kill(os.getpid(), 9)
    while kind == "hang":
        time.sleep(3600)
