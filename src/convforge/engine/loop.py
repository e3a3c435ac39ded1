"""The training loop: data on the training device as uint8, batches by index, metrics summed on the device.

No DataLoader: the decoded set is one tensor, so a batch is an index_select plus batched augmentation.
"""

from __future__ import annotations

import contextlib
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .._config import from_dict, merge, to_dict
from ..data import DataSplits, ImageSet, load_data
from ..errors import ConvforgeError
from ..inference import autocast, batched_logits, resolve_device, resolve_precision, scale_factors
from ..models import build_model, resolve_spec
from ..run import Run, default_run_dir
from . import distributed, progressive, warmup
from .augment import AlternateFlip, augment_batch, augment_of
from .checkpoint import BackgroundWriter, TrainState, checkpoint_job, load_checkpoint
from .config import TrainConfig
from .cross_entropy import backward, cross_entropy
from .dynamo_free import dynamo_import_skipped
from .fast import fast_path, prepare_model, use_graphs
from .lookahead import Lookahead
from .progress import EpochProgress
from .schedules import make_scheduler
from .solvers import make_optimizer
from .stream import open_stream
from .transfer import apply_init, freeze_batchnorm


@dataclass
class TrainResult:
    run: Run
    test_accuracy: float | None
    history: list[dict[str, Any]]
    time_s: float


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        # warn_only: a few CUDA backward kernels (max-pool) have no deterministic version
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True


def channel_stats(images: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and std on the 0..1 scale, from exact integer sums, in chunks of ~8 M values (bounded
    memory), on the images' device (on the GPU: 5,000 Imagenette images took 0.8 s in float64 on the CPU)."""
    c = images.shape[1]
    total = torch.zeros(c, dtype=torch.int64, device=images.device)
    total_sq = torch.zeros_like(total)
    for chunk in images.split(max(1, (1 << 23) // max(1, images[0].numel()))):
        x = chunk.to(torch.int32)
        total += x.sum((0, 2, 3), dtype=torch.int64)
        total_sq += x.square_().sum((0, 2, 3), dtype=torch.int64)
    count = images.numel() // c
    mean = total.double().cpu() / count
    var = total_sq.double().cpu() / count - mean**2
    std = (var.clamp_min(1e-12).sqrt() / 255).clamp_min(1e-3)
    return [round(v, 6) for v in (mean / 255).tolist()], [round(v, 6) for v in std.tolist()]


def macs_per_image(layers: list[dict[str, Any]]) -> int:
    """Multiply-adds of one forward pass: a conv's weights are used at every output position."""
    total = 0
    for layer in layers:
        if layer["type"] == "residual":
            shortcut = layer["params"].get("shortcut") or []
            shortcut = shortcut if isinstance(shortcut, list) else []
            total += macs_per_image(layer["params"]["layers"]) + macs_per_image(shortcut)
        elif layer["type"] == "conv":
            _, h, w = layer["out_shape"]
            total += layer["param_count"] * h * w
        else:
            total += layer.get("param_count", 0)
    return total


def set_cpu_threads(threads: int, macs_per_step: int, device: torch.device) -> None:
    """Threads on CPU; auto picks 1 for tiny steps, where thread sync costs more than it saves.

    Measured: digits-cnn on 8x8 digits, batch 64 (0.9 M MACs/step): 16 ms/step on 1 thread, 90 ms on 2 (2 cores);
    digits-cnn on MNIST, batch 128 (64 M MACs/step): 9.7 s/epoch on 1 thread, 2.9 s on 16 (H200 host).
    """
    if device.type != "cpu":
        return
    if threads <= 0:
        threads = 1 if macs_per_step < 20_000_000 else (os.cpu_count() or 1)
    torch.set_num_threads(threads)


def class_weights(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    counts = torch.bincount(labels, minlength=num_classes).float().clamp_min(1)
    return counts.sum() / (num_classes * counts)


def predictions(logits: torch.Tensor, binary: bool) -> torch.Tensor:
    """Predicted classes: the logit's sign for a binary (single-logit) model, else the argmax."""
    return (logits[:, 0] > 0).long() if binary else logits.argmax(1)


class Trainer:
    """One training run: owns the model, solver, schedule, data on device and the Run folder."""

    def __init__(self, cfg: TrainConfig, run: Run, splits: DataSplits, log: Callable[[str], None]):
        self.cfg, self.run, self.splits, self.log = cfg, run, splits, log
        self.device = distributed.train_device(cfg)  # cuda:LOCAL_RANK in a multi-GPU worker
        train = splits.train
        self.classes = splits.classes
        in_shape = tuple(train.images.shape[1:])
        self.spec = resolve_spec(cfg.model, in_shape=in_shape, num_classes=len(self.classes))
        if cfg.progressive_epochs:
            progressive.check(cfg, in_shape, self.spec)
        self.binary = self.spec.output == "sigmoid"
        self.model = build_model(self.spec).to(self.device)
        if self.device.type == "cuda":
            self.model = self.model.to(memory_format=torch.channels_last)
        macs_per_step = macs_per_image(self.spec.layers) * cfg.batch_size
        set_cpu_threads(cfg.threads, macs_per_step, self.device)
        self.precision = resolve_precision(cfg.precision, self.device)
        self.frozen = apply_init(self.model, cfg, log) if cfg.init else []
        self.stream = open_stream(cfg, splits, self.device, cfg_to_data(cfg), log)  # None: the set lives on the device
        layout = torch.channels_last if self.device.type == "cuda" else torch.preserve_format  # gathers: no copy
        self.x_train = train.images if self.stream is not None else train.images.to(self.device, memory_format=layout)
        if cfg.rescale == "unit":
            self.mean, self.std = [0.0] * in_shape[0], [1.0] * in_shape[0]
        else:
            self.mean, self.std = channel_stats(self.x_train)
        self.offset, self.scale = scale_factors(self.mean, self.std, self.device)
        self.y_train = train.labels.to(self.device)
        self.steps_per_epoch = -(-len(self.y_train) // cfg.batch_size)
        prepare_model(self)  # a recipe's changes to the bare model (engine/fast/)
        self.par = distributed.parallelize(self)  # DDP / hybrid wrapping and the loop's hooks (engine/distributed.py)
        fused = self.device.type == "cuda"
        self.optimizer = make_optimizer(
            cfg.solver, self.model.parameters(), cfg.lr, cfg.momentum, cfg.weight_decay, fused=fused,
            capturable=use_graphs(cfg, self.device, streaming=self.stream is not None),
        )  # fmt: skip
        self.scheduler = make_scheduler(self.optimizer, cfg, self.steps_per_epoch)
        self.gen = torch.Generator(device=self.device)
        self.gen.manual_seed(cfg.seed)
        self.started = time.perf_counter()
        self.augment = augment_of(cfg)
        self.loss_weight = None
        if cfg.balance == "weights":
            self.loss_weight = class_weights(train.labels, len(self.classes)).to(self.device)
        self.flips = None
        if cfg.flip and cfg.flip_mode == "alternate":
            self.flips = AlternateFlip(len(self.y_train), cfg.seed, self.device)
        self.after_step: list[Lookahead] = []  # called after each optimizer step, captured with it
        if cfg.lookahead:
            total = cfg.epochs * self.steps_per_epoch
            done = lambda: self.scheduler.last_epoch  # noqa: E731  (read late: a recipe hook may swap the scheduler)
            self.after_step.append(Lookahead(self.model, done, cfg.lookahead, self.steps_per_epoch, total))
        # called at each epoch's start with its 0-based index (resume-safe: from the scheduler's step count), before
        # any step; recipe hooks (engine/fast SETUP) add them, e.g. cifar10-fast's freezing of its whitening bias
        self.epoch_hooks: list[Callable[[Trainer, int], None]] = []
        if cfg.progressive_epochs:
            self.epoch_hooks.append(progressive.switch)
        self.sample_weight = None
        if cfg.balance == "sampler":
            per_class = class_weights(train.labels, len(self.classes))
            self.sample_weight = per_class[train.labels].to(self.device)
        self.fast = fast_path(self)  # captured K-step graphs around step(batch(idx)), or None: eager (engine/fast/)

    # -- one step -------------------------------------------------------------------------------------
    def loss_fn(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        ls = self.cfg.label_smoothing
        if self.binary:
            target = labels.float() * (1 - ls) + 0.5 * ls
            pos_weight = None
            if self.loss_weight is not None:
                pos_weight = self.loss_weight[1] / self.loss_weight[0]
            return F.binary_cross_entropy_with_logits(logits[:, 0].float(), target, pos_weight=pos_weight)
        if self.loss_weight is None:  # on CUDA one Triton launch forward and one op backward, not ~6 kernels
            return cross_entropy(logits, labels, label_smoothing=ls)
        return F.cross_entropy(logits.float(), labels, weight=self.loss_weight, label_smoothing=ls)

    def predictions(self, logits: torch.Tensor) -> torch.Tensor:
        return predictions(logits, self.binary)

    def batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.stream is not None:  # host-resident set: the prefetched batch (engine/stream.py)
            raw, labels = self.stream.take(idx)
        else:
            raw, labels = self.x_train[idx], self.y_train[idx]
        images = self.augment_images((raw.float() - self.offset) * self.scale, idx)
        if self.device.type == "cuda":
            images = images.contiguous(memory_format=torch.channels_last)
        return images, labels

    def augment_images(self, images: torch.Tensor, rows: torch.Tensor, unit: torch.Tensor | None = None):
        """The batch's augmentation, then its size for this epoch (engine/progressive.py); `rows` are its training-set
        rows (alternating flips are per image)."""
        if self.augment.active:
            flip = self.flips.mask(rows) if self.flips is not None else None
            unit = self.scale * 255 if unit is None else unit
            images = augment_batch(images, self.augment, self.gen, unit=unit, flip=flip)
        return progressive.resized(self, images)

    def step(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimizer step: the reference that fast paths (graphs, compile, DDP) wrap. Returns device tensors:
        the loss and the number of right predictions."""
        loss, logits = self.update(images, labels)
        return loss, (self.predictions(logits) == labels).sum()

    def update(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """step() without counting the hits: returns the loss and the (detached) logits."""
        with autocast(self.device, self.precision):
            logits = self.model(images)
        loss = self.loss_fn(logits, labels)
        self.optimizer.zero_grad(set_to_none=True)
        backward(loss)
        self.optimizer.step()
        for hook in self.after_step:
            hook()
        return loss.detach(), logits.detach()

    def eager_step(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.step(*self.batch(idx))

    def epoch_index(self) -> int:
        """The 0-based epoch the next step belongs to, from the scheduler's step count (so right after a resume too)."""
        return self.scheduler.last_epoch // self.steps_per_epoch

    def out_of_time(self) -> bool:
        budget = self.cfg.time_budget_s
        return budget > 0 and self.par.any_rank(time.perf_counter() - self.started > budget)

    def epoch_order(self) -> torch.Tensor:
        n = len(self.y_train)
        if self.sample_weight is not None:
            return self.par.shard(torch.multinomial(self.sample_weight, n, replacement=True, generator=self.gen))
        return self.par.shard(torch.randperm(n, device=self.device, generator=self.gen))  # this rank's part

    def train_epoch(self, progress: EpochProgress) -> dict[str, float]:
        self.model.train()
        if self.frozen:
            freeze_batchnorm(self.model)
        for epoch_hook in self.epoch_hooks:
            epoch_hook(self, self.epoch_index())
        order = self.epoch_order()
        if self.flips is not None:
            self.flips.start_epoch(self.epoch_index())
        for hook in self.after_step:
            hook.start_epoch()
        if self.stream is not None:
            order = self.stream.plan(order)  # on the host, so batches are prefetched; one host sync per epoch
        if self.fast is not None:  # captured K-step graphs: the same steps, one replay per K (engine/fast/graph.py)
            return self.fast.train_epoch(order, progress)
        loss_sum = torch.zeros((), device=self.device)
        hits = torch.zeros((), device=self.device, dtype=torch.long)
        seen = 0
        for step, idx in enumerate(order.split(self.cfg.batch_size), start=1):
            loss, batch_hits = self.eager_step(idx)
            self.scheduler.step()
            loss_sum.add_(loss, alpha=len(idx))
            hits += batch_hits  # no .item(): read once per epoch
            seen += len(idx)
            if self.out_of_time():
                break
            if progress.wants_metrics():  # host sync, at most twice a second, only with a live bar
                progress.step(step, (loss_sum / seen).item(), hits.item() / seen, seen)
            else:
                progress.step(step)
        return self.par.epoch_metrics(loss_sum, hits, seen)  # summed over ranks; one host sync

    def measure(self, data: ImageSet) -> dict[str, float]:
        """Loss and accuracy on a held-out set (several processes: rank 0 measures the full model, all agree)."""
        return self.par.on_main(lambda model: self._measure(model, data))

    def _measure(self, model: torch.nn.Module, data: ImageSet) -> dict[str, float]:
        logits = batched_logits(
            model,
            data.images,
            self.mean,
            self.std,
            batch_size=512,
            device=self.device,
            precision=self.precision if self.device.type == "cuda" else "fp32",
        )
        labels = data.labels.to(self.device)
        loss = self.loss_fn(logits, labels)
        acc = (self.predictions(logits) == labels).float().mean()
        return {"loss": loss.item(), "acc": acc.item()}


def _epoch_line(row: dict[str, Any], epochs: int) -> str:
    parts = [f"epoch {row['epoch']}/{epochs}", f"loss {row['train_loss']:.4f}", f"acc {row['train_acc']:.2%}"]
    if row.get("val_acc") is not None:
        parts += [f"val_loss {row['val_loss']:.4f}", f"val_acc {row['val_acc']:.2%}"]
    parts += [f"{row['images_per_s']:,.0f} img/s", f"{row['time_s']:.1f}s"]
    return "  ".join(parts)


def _improved(row: dict[str, Any], best: dict[str, Any]) -> bool:
    return row.get("val_loss") is not None and row["val_loss"] < best.get("val_loss", float("inf"))


def _run_epochs(tr: Trainer, state: TrainState, progress_live: bool | None, on_epoch=None) -> TrainState:
    cfg, run = tr.cfg, tr.run
    patience_left = cfg.early_stopping
    background = distributed.world_size() == 1
    with (
        contextlib.closing(BackgroundWriter(background)) as writer,  # closed: every checkpoint is on disk
        EpochProgress(cfg.epochs, tr.steps_per_epoch, live=progress_live, log=tr.log) as progress,
    ):
        for epoch in range(state.epoch + 1, cfg.epochs + 1):
            progress.start_epoch(epoch)
            t0 = time.perf_counter()
            row: dict[str, Any] = {"epoch": epoch, "lr": tr.optimizer.param_groups[0]["lr"]}
            row.update(tr.train_epoch(progress))
            train_time = time.perf_counter() - t0
            if len(tr.splits.val.labels):
                val = tr.measure(tr.splits.val)
                row.update(val_loss=val["loss"], val_acc=val["acc"])
            row.update(time_s=round(train_time, 4), images_per_s=round(len(tr.y_train) / train_time, 1))
            state.history.append(row)
            state.epoch = epoch
            if _improved(row, state.best):
                state.best = {"epoch": epoch, "val_loss": row["val_loss"], "val_acc": row["val_acc"]}
                if cfg.early_stopping:
                    run.save_weights(tr.model.state_dict())  # best weights, restored at the end (Keras-style)
            job = checkpoint_job(run.checkpoint_path, tr.model, tr.optimizer, tr.scheduler, tr.gen, state)
            rows = [dict(r) for r in state.history]
            writer.run(lambda job=job, rows=rows: (job(), write_metrics(run, rows)))  # metrics never run ahead
            progress.end_epoch(_epoch_line(row, cfg.epochs))
            if on_epoch is not None:
                writer.wait()  # the hook may read this epoch's checkpoint
                on_epoch(row)  # studies report here (and may raise to prune a trial)
            if tr.out_of_time():
                tr.log(f"time budget of {cfg.time_budget_s:g} s reached after epoch {epoch}")
                break
            if cfg.early_stopping and state.best.get("epoch") != epoch:
                patience_left -= 1
                if patience_left <= 0:
                    tr.log(f"early stopping: no val_loss improvement for {cfg.early_stopping} epochs")
                    break
            elif cfg.early_stopping:
                patience_left = cfg.early_stopping
    return state


def write_metrics(run: Run, history: list[dict[str, Any]]) -> None:
    from .._io import write_json, write_text

    if not distributed.is_main():
        return
    keys = list(dict.fromkeys(k for row in history for k in row))
    lines = [",".join(keys)] + [
        ",".join("" if row.get(k) is None else str(row.get(k)) for k in keys) for row in history
    ]
    write_text(run.file("metrics.csv"), "\n".join(lines) + "\n")
    write_json(run.file("metrics.json"), history)


def _open_or_create_run(cfg: TrainConfig, splits: DataSplits, tr_spec_dict: dict, mean, std, out: Path) -> Run:
    meta = {
        "classes": splits.classes,
        "output": tr_spec_dict["output"],
        "preprocessing": {
            "channels": int(splits.train.images.shape[1]),
            "height": int(splits.train.images.shape[2]),
            "width": int(splits.train.images.shape[3]),
            "resize": cfg.resize,
            "mean": mean,
            "std": std,
        },
        "data": splits.info,
    }
    return Run.create(out, meta=meta, spec_dict=tr_spec_dict, config_dict=to_dict(cfg))


def train(
    cfg: TrainConfig | None = None,
    *,
    resume: str | Path | None = None,
    progress: bool | None = None,
    log: Callable[[str], None] = print,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    **overrides: Any,
) -> TrainResult:
    """Train a model; returns the Run and the test accuracy. `resume` continues a Run from its checkpoint."""
    cfg = cfg or TrainConfig()
    if resume is not None:
        cfg, run_dir = _resume_config(Path(resume), overrides)
    else:
        cfg = merge(cfg, **overrides)
        run_dir = Path(cfg.out) if cfg.out else default_run_dir(cfg.source, cfg.model)
        cfg = merge(cfg, out=str(run_dir))
    if distributed.should_launch(cfg):  # --gpus/--procs N: N processes run this function (engine/distributed.py)
        return distributed.launch(cfg, resume=resume, progress=progress, log=log)
    with dynamo_import_skipped(active=not cfg.compile):
        return _train_here(cfg, run_dir, resume, progress, log, on_epoch)


def _train_here(
    cfg: TrainConfig,
    run_dir: Path,
    resume: str | Path | None,
    progress: bool | None,
    log: Callable[[str], None],
    on_epoch: Callable[[dict[str, Any]], None] | None,
) -> TrainResult:
    """train() in this process: data and GPU warm-up side by side, then the Trainer, the epochs and the test."""
    t_start = time.perf_counter()
    distributed.init_from_env(cfg)  # started by torchrun or the launch above: join the process group
    seed_everything(cfg.seed, cfg.deterministic)
    device = resolve_device(cfg.device)  # fail before loading data
    warming = warmup.start(cfg, device) if distributed.world_size() == 1 else None
    phases = Phases()
    splits = distributed.local_main_first(lambda: load_data(cfg_to_data(cfg), progress=progress is not False))
    phases.done("data")
    _report_skipped(splits, log)
    if warming is not None:
        warming.join()
    phases.done("warmup_wait")
    trainer = Trainer(distributed.trainer_config(cfg), Run(run_dir), splits, log)
    state = _attach_run(trainer, cfg, splits, run_dir, resume)
    phases.done("setup")
    log(
        f"training {trainer.spec.name} ({trainer.spec.param_count:,} parameters) on {len(splits.train.labels):,} "
        f"images of {len(splits.classes)} classes, {trainer.device.type}, {cfg.epochs} epochs"
    )
    state = _run_epochs(trainer, state, progress, on_epoch)
    phases.done("epochs")
    return _finish(trainer, state, time.perf_counter() - t_start, phases)


class Phases:
    """Wall seconds of each stage of train(), recorded in the Run's meta.json (`phases_s`) and logged at the end:
    where a run's time goes (decoding, GPU start-up, capture, the epochs, the test pass)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def done(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name] = round(now - self._last, 3)
        self._last = now

    def line(self) -> str:
        return ", ".join(f"{name.replace('_', ' ')} {s:.1f}" for name, s in self.seconds.items())


def _attach_run(trainer: Trainer, cfg: TrainConfig, splits: DataSplits, run_dir: Path, resume) -> TrainState:
    """Give the trainer its Run folder (new, or the one being resumed) and the state to continue from."""
    if not distributed.is_main():
        trainer.run = distributed.FollowerRun(run_dir)  # rank 0 writes the Run; the others only read it
    elif resume is None or not (run_dir / "meta.json").exists():
        trainer.run = _open_or_create_run(cfg, splits, trainer.spec.to_dict(), trainer.mean, trainer.std, run_dir)
    else:
        trainer.run = Run.open(run_dir, need_weights=False)
    if resume is None or not trainer.run.checkpoint_path.is_file():
        return TrainState(epoch=0)
    state = load_checkpoint(
        trainer.run.checkpoint_path, trainer.model, trainer.optimizer, trainer.scheduler, trainer.gen
    )
    trainer.log(f"resuming {run_dir} after epoch {state.epoch}")
    return state


def _finish(trainer: Trainer, state: TrainState, elapsed_s: float, phases: Phases) -> TrainResult:
    """Save the final (or, with early stopping, the best) weights, measure the test split, record it in the Run."""
    cfg, splits = trainer.cfg, trainer.splits
    if not (cfg.early_stopping and state.best):
        trainer.run.save_weights(trainer.model.state_dict())
    else:
        distributed.barrier()  # rank 0 has written the best weights before any rank reads them
        trainer.model.load_state_dict(trainer.run.state_dict())
    test_acc = trainer.measure(splits.test)["acc"] if len(splits.test.labels) else None
    phases.done("test_and_save")
    trainer.log(f"time (s): {phases.line()}; in all {elapsed_s + phases.seconds['test_and_save']:.1f}")
    trainer.run.update_meta(
        test_accuracy=test_acc,
        epochs_done=state.epoch,
        train_time_s=round(elapsed_s, 3),
        device=str(trainer.device),
        torch_version=torch.__version__,
        phases_s=phases.seconds,
    )
    return TrainResult(trainer.run, test_acc, state.history, elapsed_s)


def _resume_config(run_dir: Path, overrides: dict[str, Any]) -> tuple[TrainConfig, Path]:
    config_path = run_dir / "config.yaml"
    if not config_path.is_file():
        raise ConvforgeError(f"cannot resume {run_dir}: no config.yaml there; give a folder made by `convforge train`")
    from .._io import read_yaml

    cfg = from_dict(TrainConfig, read_yaml(config_path))
    allowed = {"epochs", "device", "early_stopping", "gpus", "procs", "dist_timeout_s"}
    changed = {k: v for k, v in overrides.items() if v is not None and k not in allowed and v != getattr(cfg, k)}
    if changed:
        key = next(iter(changed))
        raise ConvforgeError(
            f"--resume keeps the run's own config; --{key.replace('_', '-')} cannot change "
            f"(only --epochs, --device, --early-stopping, --gpus, --procs, --dist-timeout-s can)"
        )
    cfg = merge(cfg, **{k: v for k, v in overrides.items() if k in allowed})
    return cfg, run_dir


def cfg_to_data(cfg: TrainConfig):
    from ..data import DataConfig

    return DataConfig(
        source=cfg.source,
        split=cfg.split,
        seed=cfg.seed,
        data_dir=cfg.data_dir,
        cache_dir=cfg.cache_dir,
        image_size=cfg.image_size,
        channels=cfg.channels,
        resize=cfg.resize,
        strict=cfg.strict,
        download=cfg.download,
    )


def _report_skipped(splits: DataSplits, log: Callable[[str], None]) -> None:
    skipped = splits.info.get("skipped") or []
    if skipped:
        shown = "; ".join(f"{p} ({why})" for p, why in skipped[:3])
        more = f" and {len(skipped) - 3} more" if len(skipped) > 3 else ""
        log(f"skipped {len(skipped)} unreadable file(s): {shown}{more} (use --strict to stop on them)")
