"""Multi-GPU scaling: images/s and time-to-accuracy on 1..N GPUs, data parallel and hybrid, via `convforge.train`.

    export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
    PYTHONPATH=src python benchmarks/scaling.py --gpus 1,2            # 4,8 on bigger machines
    PYTHONPATH=src python benchmarks/scaling.py --device cpu --gpus 1,2 --quick   # a dry run on CPU processes
    PYTHONPATH=src python benchmarks/scaling.py --gpus 1,2,4 --workloads cifar-fast --cifar CIFAR_JPG_TAR_GZ

For each GPU count one torch.distributed launch runs every (model, workload, mode) in turn through the normal
`train()` (DDP or hybrid, rank 0 writes the Run). Workloads are synthetic, learnable images (a per-class random
low-frequency pattern plus noise), held in memory: "imagenette" (224 px, 10 classes) and "cifar" (32 px, 10
classes). Weak scaling: the batch is per GPU (--batch-scope per-gpu) with the linear lr scaling rule (--scale-lr),
so N GPUs take N times the global batch; --warmup E ramps the lr up over E epochs (Goyal et al.'s gradual warm-up,
which the large lrs of 4 and 8 GPUs need). All runs use the eager step (no CUDA graphs: DDP disables them), so the
ratio compares the same step. images/s is the median over epochs after the first (cuDNN autotuning, warm-up);
time-to-accuracy is the training time until the validation accuracy first reaches --target.

The workload "cifar-fast" is the real CIFAR-10 fast recipe (`convforge train CIFAR --recipe fast`) on the JPEG
training images (10,000 held out) instead: strong scaling, its global batch of 1024 and its lr unchanged, split
over the GPUs, so accuracy stays comparable; its accuracy is the held-out test accuracy (with TTA) and its time to
target the whole training time when that accuracy reaches --fast-target. On 1 GPU it runs twice: the eager step
(the step DDP runs, the speed-up's base) and the default captured step ("single+graphs").

Writes benchmarks/results/scaling_<device>_<date>.json (device, versions, date, rows) and .md (table).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import statistics
import sys
import uuid
from pathlib import Path

NO_MULTICAST = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1", "NVSHMEM_DISABLE_NVLS": "1"}
for _key, _value in NO_MULTICAST.items():
    os.environ.setdefault(_key, _value)  # NVLink multicast stays off; spawned workers inherit os.environ

WORKLOADS = {  # name: (size px, train images, val images, per-GPU batch)
    "imagenette": (224, 4096, 512, 128),
    "cifar": (32, 16384, 1024, 256),
}
QUICK = {"imagenette": (64, 64, 32, 16), "cifar": (32, 96, 32, 16)}
RECIPE = {  # solver settings per model (1-GPU lr; --scale-lr multiplies it by the GPU count)
    "resnet18": dict(solver="sgdm", lr=0.05, weight_decay=5e-4),
    "alexnet": dict(solver="sgdm", lr=0.01, weight_decay=5e-4),
}


# -- data -------------------------------------------------------------------------------------------------
def synthetic_splits(size: int, n_train: int, n_val: int, classes: int = 10, seed: int = 0, device: str = "cpu"):
    """Learnable images: class k is a fixed random 7x7 colour pattern upsampled to size, plus noise (uint8).

    Made on `device`, a rank's GPU: in the 4-GPU run of 32,768 images at 224 px, making them on the CPU was most of
    each launch's ~90 s (wall time less the epochs' time). Not yet timed on a GPU."""
    import torch
    import torch.nn.functional as F

    from convforge.data import DataSplits, ImageSet

    gen = torch.Generator(device=device).manual_seed(seed)
    templates = torch.rand(classes, 3, 7, 7, generator=gen, device=device)
    templates = F.interpolate(templates, size=(size, size), mode="bilinear")

    def make(n: int) -> ImageSet:
        labels = torch.arange(n, device=device) % classes
        labels = labels[torch.randperm(n, generator=gen, device=device)]
        images = torch.empty(n, 3, size, size, dtype=torch.uint8)
        for start in range(0, n, 512):
            y = labels[start : start + 512]
            noise = torch.rand(len(y), 3, size, size, generator=gen, device=device)
            images[start : start + 512] = ((0.45 * templates[y] + 0.55 * noise) * 255).to(torch.uint8).cpu()
        return ImageSet(images, labels.cpu(), [str(k) for k in range(classes)])

    train, val = make(n_train), make(n_val)
    empty = ImageSet(train.images[:0], train.labels[:0], train.classes)
    info = {"source": f"synthetic-{size}px", "split": None}
    return DataSplits(train, val, empty, train.classes, info)


# -- one launch per GPU count -----------------------------------------------------------------------------
def worker(plan: list[dict], sizes: dict, device: str, out_root: str, cifar: str = "") -> list[dict]:
    """Every configuration of the plan, in this rank; rank 0 returns the rows."""
    import convforge.engine.loop as loop

    rows, cache = [], {}
    real_load_data = loop.load_data
    for item in plan:
        if item["workload"] == "cifar-fast":
            loop.load_data = real_load_data
            rows.append(fast_recipe_row(item, cifar, device, out_root))
            _keep_row(out_root, rows[-1])
            continue
        size, n_train, n_val, batch = sizes[item["workload"]]
        key = item["workload"]
        if key not in cache:
            cache.clear()  # one workload's images in memory at a time
            maker = "cpu" if device == "cpu" else f"cuda:{os.environ.get('LOCAL_RANK', '0')}"
            cache[key] = synthetic_splits(size, n_train, n_val, device=maker)
        loop.load_data = lambda cfg, progress=True, _s=cache[key]: _s  # noqa: B023 (bound per item)
        options = dict(RECIPE[item["model"]], model=item["model"], source=f"synthetic-{key}", epochs=item["epochs"])
        options.update(batch_size=batch, batch_scope="per-gpu", scale_lr=True, schedule="constant")
        options.update(warmup_epochs=item["warmup_epochs"])
        options.update(parallel=item["mode"] if item["mode"] != "single" else "data", cuda_graphs=False)
        options.update(device=device, out=f"{out_root}/{item['model']}-{key}-{item['mode']}-{item['gpus']}")
        log = print if os.environ.get("RANK", "0") == "0" else (lambda s: None)
        log(f"== {item['model']} {key} {item['mode']} on {item['gpus']} {'GPU' if device != 'cpu' else 'process'}(s)")
        result = loop.train(loop.TrainConfig(**options), progress=False, log=log)
        rows.append(summarize(item, result.history, batch * item["gpus"], item["target"]))
        _keep_row(out_root, rows[-1])
    return rows


def _keep_row(out_root: str, row: dict) -> None:
    if os.environ.get("RANK", "0") == "0":  # each row as it comes: a run cut short keeps what it measured
        with open(f"{out_root}.rows.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")


def fast_recipe_row(item: dict, cifar: str, device: str, out_root: str) -> dict:
    """The CIFAR-10 fast recipe as a user runs it, in this rank of the launch (strong scaling: batch 1024 global)."""
    from convforge.api import train

    log = print if os.environ.get("RANK", "0") == "0" else (lambda s: None)
    log(f"== cifar10-fast {item['mode']} on {item['gpus']} {'GPU' if device != 'cpu' else 'process'}(s)")
    options = dict(device=device, out=f"{out_root}/cifar-fast-{item['mode']}-{item['gpus']}".replace("+", "-"))
    options.update(parallel="hybrid" if item["mode"] == "hybrid" else "data")
    if item["mode"] != "single+graphs":
        options.update(cuda_graphs=False)
    if item.get("epochs_fast"):
        options.update(epochs=item["epochs_fast"])
    result = train(cifar, recipe="fast", progress=False, log=log, **options)
    history, acc = result.history, result.test_accuracy or 0.0
    train_time = sum(row["time_s"] for row in history)
    rates = [row["images_per_s"] for row in history[1:]] or [history[0]["images_per_s"]]
    return {
        **{k: item[k] for k in ("model", "workload", "mode", "gpus")},
        "global_batch": 1024,
        "images_per_s": round(statistics.median(rates), 1),
        "epoch_time_s": [row["time_s"] for row in history],
        "time_to_target_s": round(train_time, 2) if acc >= item["fast_target"] else None,
        "target_val_acc": item["fast_target"],
        "final_val_acc": round(acc, 4),
        "train_time_s": round(train_time, 2),
    }


def summarize(item: dict, history: list[dict], global_batch: int, target: float) -> dict:
    rates = [row["images_per_s"] for row in history[1:]] or [history[0]["images_per_s"]]
    elapsed, reached = 0.0, None
    for row in history:
        elapsed += row["time_s"]
        if reached is None and (row.get("val_acc") or 0) >= target:
            reached = round(elapsed, 2)
    return {
        **{k: item[k] for k in ("model", "workload", "mode", "gpus")},
        "global_batch": global_batch,
        "warmup_epochs": item.get("warmup_epochs", 0),
        "images_per_s": round(statistics.median(rates), 1),
        "epoch_time_s": [row["time_s"] for row in history],
        "time_to_target_s": reached,
        "target_val_acc": target,
        "final_val_acc": round(history[-1].get("val_acc") or 0.0, 4),
    }


def launch(n: int, plan: list[dict], sizes: dict, device: str, out_root: str, cifar: str) -> list[dict]:
    from torch.distributed.launcher.api import elastic_launch

    from convforge.engine.distributed import local_launch_config

    if n == 1:  # one process needs no launcher; also the only way the captured (CUDA graph) step runs
        return worker(plan, sizes, device, out_root, cifar)
    return elastic_launch(local_launch_config(n, "scaling"), worker)(plan, sizes, device, out_root, cifar)[0]


# -- report -----------------------------------------------------------------------------------------------
def environment(device: str) -> dict:
    import torch

    env = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": "cpu" if device == "cpu" else torch.cuda.get_device_name(0),
        "gpus_on_machine": torch.cuda.device_count(),
    }
    if device != "cpu":
        env.update(cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version())
        env["nccl"] = ".".join(map(str, torch.cuda.nccl.version()))
    return env


def markdown(env: dict, rows: list[dict]) -> str:
    base = {(r["model"], r["workload"]): r["images_per_s"] for r in rows if r["mode"] == "single"}
    lines = [
        f"# Multi-GPU scaling ({env['device']}, torch {env['torch']}, {env['date'][:10]})",
        "",
        "Weak scaling: per-GPU batch, lr x GPUs. Synthetic learnable images; eager step (no CUDA graphs)."
        + "".join(sorted({f" lr warm-up: {r['warmup_epochs']:g} epoch(s)." for r in rows if r.get("warmup_epochs")})),
        "cifar-fast: the CIFAR-10 fast recipe on the JPEG training images, strong scaling (global batch 1024);",
        "its accuracy is on the 10,000 held-out images (with TTA) and its time is the whole training time.",
        "",
        "| model | workload | mode | GPUs | global batch | images/s | speed-up | time to target (s) | final val acc |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        one = base.get((r["model"], r["workload"]))
        speedup = f"{r['images_per_s'] / one:.2f}x" if one else "n/a"
        reached = "not reached" if r["time_to_target_s"] is None else f"{r['time_to_target_s']:.1f}"
        lines.append(
            f"| {r['model']} | {r['workload']} | {r['mode']} | {r['gpus']} | {r['global_batch']} | "
            f"{r['images_per_s']:,.0f} | {speedup} | {reached} (val acc {r['target_val_acc']:.0%}) | "
            f"{r['final_val_acc']:.2%} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gpus", default="1,2", help="GPU counts, e.g. 1,2,4,8")
    p.add_argument("--models", default="resnet18,alexnet")
    p.add_argument("--workloads", default="imagenette,cifar")
    p.add_argument("--modes", default="data,hybrid", help="modes for more than one GPU")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--warmup", type=float, default=0.0, help="epochs of linear lr warm-up (large global batches)")
    p.add_argument("--target", type=float, default=0.9, help="validation accuracy for time-to-accuracy")
    p.add_argument("--cifar", default="cifar10", help="CIFAR-10 source of the cifar-fast workload")
    p.add_argument("--fast-target", type=float, default=0.875, help="held-out accuracy target of cifar-fast")
    p.add_argument("--fast-epochs", type=int, default=0, help="cifar-fast epochs (0: the recipe's)")
    p.add_argument("--device", default="cuda", help="cuda, or cpu for a dry run on CPU processes")
    p.add_argument("--quick", action="store_true", help="tiny workloads (a dry run)")
    p.add_argument("--runs", default="/tmp/convforge-scaling", help="where the Run folders go")
    p.add_argument("--results", default="benchmarks/results")
    p.add_argument("--tag", default="", help="appended to the result files' names")
    p.add_argument("--data-scale", type=float, default=1.0, help="multiply each workload's training images")
    p.add_argument("--batch-per-gpu", type=int, default=0, help="override each workload's per-GPU batch")
    a = p.parse_args()
    sizes = {  # more images and bigger batches shrink the per-epoch fixed costs that cap short runs' speed-up
        name: (px, int(n_train * a.data_scale), n_val, a.batch_per_gpu or batch)
        for name, (px, n_train, n_val, batch) in (QUICK if a.quick else WORKLOADS).items()
    }
    rows = []
    for n in [int(v) for v in a.gpus.split(",")]:
        plan = []
        for w in a.workloads.split(","):
            modes = a.modes.split(",") if n > 1 else ["single"] + (["single+graphs"] if w == "cifar-fast" else [])
            for m in ["cifar10-fast"] if w == "cifar-fast" else a.models.split(","):
                item = dict(model=m, workload=w, gpus=n, epochs=a.epochs, target=a.target, warmup_epochs=a.warmup)
                item.update(fast_target=a.fast_target, epochs_fast=a.fast_epochs)
                plan += [dict(item, mode=mode) for mode in modes]
        rows += launch(n, plan, sizes, a.device, f"{a.runs}/{uuid.uuid4().hex[:6]}", a.cifar)
    env = environment(a.device)
    tag = re.sub(r"[^a-z0-9]+", "-", env["device"].lower()).strip("-")
    suffix = ("_quick" if a.quick else "") + (f"_{a.tag}" if a.tag else "")
    stem = Path(a.results) / f"scaling_{tag}_{dt.date.today():%Y%m%d}{suffix}"
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps({**env, "argv": sys.argv[1:], "rows": rows}, indent=2) + "\n")
    stem.with_suffix(".md").write_text(markdown(env, rows))
    print(markdown(env, rows))
    print(f"results: {stem}.json/.md")


if __name__ == "__main__":
    main()
