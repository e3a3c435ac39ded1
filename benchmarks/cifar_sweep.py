"""Ablations of the CIFAR-10 fast recipe on the GPU: which of its tricks buy accuracy per second.

    PYTHONPATH=src CONVFORGE_CACHE=.data python benchmarks/cifar_sweep.py SOURCE [--plan quick|full] [--seeds 0 1]
        [--out benchmarks/results]

SOURCE: the CIFAR-10 JPEG training archive or folder (10,000 images held out, as the recipe does). Each variant is
the recipe with some HYP fields (TrainConfig options) and some NET/TRICKS entries (cifar10_fast's architecture and
trick switches) changed. One warm-up run first (cuDNN and CUDA context), not reported. Writes
cifar_sweep_<device>_<date>.json / .md: train s (the epochs loop), total s (with data loading from the decoded
cache, whitening, capture and TTA), accuracy with and without TTA.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

import convforge.recipes  # noqa: F401  registers the recipes
from convforge import api
from convforge.recipes import cifar10_fast

BASE = dict(epochs=8)
MUON = dict(solver="muon")
MUON2K = dict(solver="muon", lr=0.24, momentum=0.6, batch_size=2000)
PLANS = {
    "quick": [
        ("airbench-style e6", {"epochs": 6}, {}, {}),
        ("airbench-style e7", {"epochs": 7}, {}, {}),
        ("airbench-style e8", {}, {}, {}),
        ("airbench-style e10", {"epochs": 10}, {}, {}),
        ("triangle schedule e8", {"schedule": "triangle"}, {}, {}),
        ("relu e8", {}, {"act": "relu"}, {}),
        ("no lookahead e8", {"lookahead": 0}, {}, {}),
        ("random flip e8", {"flip_mode": "random"}, {}, {}),
        ("avg pool e8", {}, {"pool": "global_avgpool"}, {}),
        ("no bias lr x64 e8", {}, {}, {"bias_lr": 1.0}),
        ("trained BN scale e8", {}, {"scale": True}, {}),
        ("default init e8", {}, {"init": None}, {}),
        ("lr 1.0 e8", {"lr": 1.0}, {}, {}),
        ("lr 2.2 e8", {"lr": 2.2}, {}, {}),
    ],
    "speed": [
        ("triangle e8", {"schedule": "triangle"}, {}, {}),
        ("triangle e8 fp32", {"schedule": "triangle", "precision": "fp32"}, {}, {}),
        ("triangle e8 compile", {"schedule": "triangle", "compile": True}, {}, {}),
        ("triangle e8 no lookahead", {"schedule": "triangle", "lookahead": 0}, {}, {}),
        ("triangle e8 relu", {"schedule": "triangle"}, {"act": "relu"}, {}),
        ("triangle e10", {"schedule": "triangle", "epochs": 10}, {}, {}),
        ("triangle e12", {"schedule": "triangle", "epochs": 12}, {}, {}),
        ("triangle e8 stem bias trained throughout", {"schedule": "triangle"}, {}, {"stem_bias_epochs": 0}),
        ("triangle e9", {"schedule": "triangle", "epochs": 9}, {}, {}),
    ],
    # the conv filters by Muon (engine/muon.py), the rest as before; 5th item: cifar10_fast.MUON entries
    "muon": [
        ("nesterov e8", {}, {}, {}),
        ("muon lr 0.24 m 0.6", {**MUON, "lr": 0.24, "momentum": 0.6}, {}, {}),
        ("muon lr 0.12 m 0.6", {**MUON, "lr": 0.12, "momentum": 0.6}, {}, {}),
        ("muon lr 0.4 m 0.6", {**MUON, "lr": 0.4, "momentum": 0.6}, {}, {}),
        ("muon lr 0.24 m 0.8", {**MUON, "lr": 0.24, "momentum": 0.8}, {}, {}),
        ("muon lr 0.24 m 0.6 ns5", {**MUON, "lr": 0.24, "momentum": 0.6}, {}, {}, {"ns_steps": 5}),
        ("muon lr 0.24 m 0.6 bs2000", {**MUON, "lr": 0.24, "momentum": 0.6, "batch_size": 2000}, {}, {}),
        ("muon lr 0.24 m 0.6 no lookahead", {**MUON, "lr": 0.24, "momentum": 0.6, "lookahead": 0}, {}, {}),
        ("muon lr 0.24 m 0.6 e7", {**MUON, "lr": 0.24, "momentum": 0.6, "epochs": 7}, {}, {}),
    ],
    "muon-bs2000": [
        ("muon bs2000 lr 0.24 m 0.6", {**MUON2K}, {}, {}),
        ("muon bs2000 lr 0.16", {**MUON2K, "lr": 0.16}, {}, {}),
        ("muon bs2000 m 0.5", {**MUON2K, "momentum": 0.5}, {}, {}),
        ("muon bs2000 m 0.7", {**MUON2K, "momentum": 0.7}, {}, {}),
        ("muon bs2000 sgd lr 2.0", {**MUON2K}, {}, {}, {"sgd_lr": 2.0}),
        ("muon bs2000 sgd lr 1.0", {**MUON2K}, {}, {}, {"sgd_lr": 1.0}),
        ("muon bs2000 lookahead 3", {**MUON2K, "lookahead": 3}, {}, {}),
        ("muon bs2500", {**MUON2K, "batch_size": 2500}, {}, {}),
        ("muon bs2000 e9", {**MUON2K, "epochs": 9}, {}, {}),
        ("muon bs2000 e10", {**MUON2K, "epochs": 10}, {}, {}),
    ],
    "muon-e9": [
        ("muon e9", {**MUON2K, "epochs": 9}, {}, {}),
        ("muon e9 m 0.7", {**MUON2K, "epochs": 9, "momentum": 0.7}, {}, {}),
        ("muon e9 smoothing 0.1", {**MUON2K, "epochs": 9, "label_smoothing": 0.1}, {}, {}),
        ("muon e9 smoothing 0.3", {**MUON2K, "epochs": 9, "label_smoothing": 0.3}, {}, {}),
        ("muon e9 translate 3", {**MUON2K, "epochs": 9, "crop_pad": 3}, {}, {}),
        ("muon e9 tta 3", {**MUON2K, "epochs": 9}, {}, {"tta": 3}),
        ("muon e9 ns 2", {**MUON2K, "epochs": 9}, {}, {}, {"ns_steps": 2}),
        ("muon e9 warm-up 1 epoch", {**MUON2K, "epochs": 9, "warmup_epochs": 1}, {}, {}),
        ("muon e9 bias lr x32", {**MUON2K, "epochs": 9}, {}, {"bias_lr": 32.0}),
        ("muon e9 logits / 6", {**MUON2K, "epochs": 9}, {}, {"logit_scale": 1 / 6}),
        ("muon e9 stem bias 2 epochs", {**MUON2K, "epochs": 9}, {}, {"stem_bias_epochs": 2}),
    ],
    "muon-widths": [
        ("muon e9", {"epochs": 9}, {}, {}),
        ("muon e10 widths 48/256/256", {"epochs": 10}, {"widths": (48, 256, 256)}, {}),
        ("muon e10 widths 64/192/256", {"epochs": 10}, {"widths": (64, 192, 256)}, {}),
        ("muon e8 widths 64/256/384", {"epochs": 8}, {"widths": (64, 256, 384)}, {}),
        ("muon e9 widths 64/256/384", {"epochs": 9}, {"widths": (64, 256, 384)}, {}),
        ("muon e8 widths 96/256/256", {"epochs": 8}, {"widths": (96, 256, 256)}, {}),
        ("muon e9 batch 1600", {"epochs": 9, "batch_size": 1600}, {}, {}),
        ("muon e12", {"epochs": 12}, {}, {}),
    ],
    # accuracy per epoch count: how much faster a step must be for more accuracy in the same second
    "epochs": [
        ("muon e9", {"epochs": 9}, {}, {}),
        ("muon e10", {"epochs": 10}, {}, {}),
        ("muon e11", {"epochs": 11}, {}, {}),
        ("muon e12", {"epochs": 12}, {}, {}),
        ("muon e14", {"epochs": 14}, {}, {}),
    ],
    # how long the whitening conv's bias trains: its backward costs epochs 1-3 ~16 ms each, its freeze a new capture
    "stem": [
        ("muon e9", {"epochs": 9}, {}, {}),
        ("muon e9 stem bias 1 epoch", {"epochs": 9}, {}, {"stem_bias_epochs": 1}),
        ("muon e9 stem bias 2 epochs", {"epochs": 9}, {}, {"stem_bias_epochs": 2}),
        ("muon e9 no stem bias", {"epochs": 9}, {"stem_bias": False}, {"stem_bias_epochs": 0}),
        ("muon e10 no stem bias", {"epochs": 10}, {"stem_bias": False}, {"stem_bias_epochs": 0}),
        ("muon e10 stem bias 1 epoch", {"epochs": 10}, {}, {"stem_bias_epochs": 1}),
    ],
    # (plan "crop", random crops smaller than the images, ran at commit a29462a with its --crop-size: reverted after)
    # lookahead's constants (engine/lookahead.py: START 0.3, DECAY_BASE 0.95, DECAY_POW 3; 6th item: module constants)
    # and a 1-pixel translate
    "lookahead": [
        ("muon e9", {"epochs": 9}, {}, {}),
        ("lookahead start 0.2", {"epochs": 9}, {}, {}, {}, {"engine.lookahead.START": 0.2}),
        ("lookahead start 0.5", {"epochs": 9}, {}, {}, {}, {"engine.lookahead.START": 0.5}),
        ("lookahead decay base 0.9", {"epochs": 9}, {}, {}, {}, {"engine.lookahead.DECAY_BASE": 0.9}),
        ("lookahead decay base 0.98", {"epochs": 9}, {}, {}, {}, {"engine.lookahead.DECAY_BASE": 0.98}),
        ("lookahead decay power 2", {"epochs": 9}, {}, {}, {}, {"engine.lookahead.DECAY_POW": 2.0}),
        ("lookahead decay power 5", {"epochs": 9}, {}, {}, {}, {"engine.lookahead.DECAY_POW": 5.0}),
        ("translate 1", {"epochs": 9, "crop_pad": 1}, {}, {}),
    ],
    # the mirror + translate in one Triton launch (engine/augment.py FUSED) against PyTorch's ops, bracketed
    "augment": [
        ("muon e9", {"epochs": 9}, {}, {}),
        ("muon e9 PyTorch augmentation", {"epochs": 9}, {}, {}, {}, {"engine.augment.FUSED": False}),
        ("muon e9 (again)", {"epochs": 9}, {}, {}),
    ],
    # airbench94_muon's schedule (linear from the peak down to 0, no warm-up) and its lookahead-free run
    "schedule": [
        ("muon e9", {"epochs": 9}, {}, {}),
        ("muon e9 linear", {"epochs": 9, "schedule": "linear"}, {}, {}),
        ("muon e9 linear no lookahead", {"epochs": 9, "schedule": "linear", "lookahead": 0}, {}, {}),
        ("muon e9 cosine", {"epochs": 9, "schedule": "cosine"}, {}, {}),
        ("muon e9 linear warm-up 0.5", {"epochs": 9, "schedule": "linear", "warmup_epochs": 0.5}, {}, {}),
        ("muon e8 linear no lookahead", {"epochs": 8, "schedule": "linear", "lookahead": 0}, {}, {}),
        ("muon e9 linear lr 0.3", {"epochs": 9, "schedule": "linear", "lr": 0.3}, {}, {}),
        ("muon e9 linear m 0.7", {"epochs": 9, "schedule": "linear", "momentum": 0.7}, {}, {}),
        ("muon e9 linear lookahead 10", {"epochs": 9, "schedule": "linear", "lookahead": 10}, {}, {}),
    ],
    # accuracy per training-set size on the same 10,000 held-out images (a split's test part is the last 20% of
    # each class's shuffled list, whatever the train and val parts: split.py; the val part here is left unused for
    # training and measured after each epoch, outside train s): how much the recipe's 40,000 images cost it against
    # the record scripts, which train on all 50,000
    "data": [
        ("muon e9 train 20k", {"epochs": 9, "split": (0.4, 0.4, 0.2)}, {}, {}),
        ("muon e9 train 25k", {"epochs": 9, "split": (0.5, 0.3, 0.2)}, {}, {}),
        ("muon e9 train 30k", {"epochs": 9, "split": (0.6, 0.2, 0.2)}, {}, {}),
        ("muon e9 train 35k", {"epochs": 9, "split": (0.7, 0.1, 0.2)}, {}, {}),
        ("muon e9 train 40k", {"epochs": 9}, {}, {}),
        ("muon e12 train 30k", {"epochs": 12, "split": (0.6, 0.2, 0.2)}, {}, {}),
        ("muon e12 train 40k", {"epochs": 12}, {}, {}),
    ],
    # 45,000 training images against the same 40,000, both measured on the last 500 of each class (5,000 images, a
    # part of the 10,000 above): one measured step toward the record scripts' 50,000
    "data45": [
        ("muon e9 train 40k test 5k", {"epochs": 9, "split": (0.8, 0.1, 0.1)}, {}, {}),
        ("muon e9 train 45k test 5k", {"epochs": 9, "split": (0.9, 0.0, 0.1)}, {}, {}),
        ("muon e8 train 40k test 5k", {"epochs": 8, "split": (0.8, 0.1, 0.1)}, {}, {}),
        ("muon e8 train 45k test 5k", {"epochs": 8, "split": (0.9, 0.0, 0.1)}, {}, {}),
    ],
    # progressive resizing (engine/progressive.py): the first epochs on batches resized to a smaller side
    "progressive": [
        ("muon e9", {"epochs": 9}, {}, {}),
        ("e12 first 4 at 24 px", {"epochs": 12, "progressive_epochs": 4, "progressive_size": 24}, {}, {}),
        ("e11 first 4 at 24 px", {"epochs": 11, "progressive_epochs": 4, "progressive_size": 24}, {}, {}),
        ("e11 first 3 at 24 px", {"epochs": 11, "progressive_epochs": 3, "progressive_size": 24}, {}, {}),
        ("e10 first 3 at 24 px", {"epochs": 10, "progressive_epochs": 3, "progressive_size": 24}, {}, {}),
        ("e11 first 4 at 22 px", {"epochs": 11, "progressive_epochs": 4, "progressive_size": 22}, {}, {}),
        ("e12 first 5 at 22 px", {"epochs": 12, "progressive_epochs": 5, "progressive_size": 22}, {}, {}),
    ],
}


def run_variant(source: str, seed: int, hyp: dict, net: dict, tricks: dict, muon: dict | None = None,
                constants: dict | None = None) -> dict:  # fmt: skip
    """One run of the recipe with `hyp` (TrainConfig options), NET / TRICKS / MUON entries and module `constants`
    ({"engine.lookahead.START": 0.2}: convforge module attributes) changed for it."""
    saved_net, saved_tricks, saved_muon = dict(cifar10_fast.NET), dict(cifar10_fast.TRICKS), dict(cifar10_fast.MUON)
    patched = [(importlib.import_module(f"convforge.{path.rpartition('.')[0]}"), path.rpartition(".")[2], value)
               for path, value in (constants or {}).items()]  # fmt: skip
    saved_constants = [(module, attr, getattr(module, attr)) for module, attr, _ in patched]
    for module, attr, value in patched:
        setattr(module, attr, value)
    cifar10_fast.NET.update(net)
    cifar10_fast.TRICKS.update(tricks)
    cifar10_fast.MUON.update(muon or {})
    try:
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            r = api.train(source, recipe="cifar10-fast", seed=seed, out=f"{tmp}/run", progress=False,
                          log=lambda s: None, **{**BASE, **hyp})  # fmt: skip
            no_tta = r.run.meta.get("test_accuracy_no_tta", r.test_accuracy)
        total = time.perf_counter() - t0
    finally:
        cifar10_fast.NET.clear()
        cifar10_fast.NET.update(saved_net)
        cifar10_fast.TRICKS.clear()
        cifar10_fast.TRICKS.update(saved_tricks)
        cifar10_fast.MUON.clear()
        cifar10_fast.MUON.update(saved_muon)
        for module, attr, value in saved_constants:
            setattr(module, attr, value)
    epoch_s = [round(row["time_s"], 4) for row in r.history]
    return dict(train_s=sum(epoch_s), total_s=total, acc=r.test_accuracy, acc_no_tta=no_tta, epoch_s=epoch_s)


def profile(source: str, variant: tuple) -> None:
    """The variant's top CUDA kernels over a whole run (training dominates; evaluation and TTA are included)."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    name, *settings = variant
    with torch_profile(activities=[ProfilerActivity.CUDA]) as prof:
        result = run_variant(source, 0, *settings)
    print(f"profile of {name}: {result}")
    print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=30, max_name_column_width=70))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("source")
    ap.add_argument("--plan", default="quick", choices=sorted(PLANS))
    ap.add_argument("--only", nargs="*", default=None, help="variant names to run (default: the whole plan)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--tag", default="", help="suffix of the result files")
    ap.add_argument("--cudnn-benchmark", action="store_true", help="autotune cuDNN (the warm-up run pays for it)")
    ap.add_argument("--profile", default="", help="a variant name: print its top CUDA kernels (one seed)")
    args = ap.parse_args()
    torch.backends.cudnn.benchmark = args.cudnn_benchmark
    run_variant(args.source, 99, {"epochs": 1}, {}, {})  # warm-up: decode cache, CUDA context, cuDNN
    if args.profile:
        profile(args.source, next(v for v in PLANS[args.plan] if v[0] == args.profile))
    rows = []
    for name, hyp, net, tricks, *muon in PLANS[args.plan]:
        if args.only and name not in args.only:
            continue
        runs = [run_variant(args.source, seed, hyp, net, tricks, *muon) for seed in args.seeds]
        row = {"variant": name, "hyp": hyp, "net": net, "tricks": tricks, "muon": muon, "runs": runs}
        for key in ("train_s", "total_s", "acc", "acc_no_tta"):
            row[key] = statistics.mean(r[key] for r in runs)
        rows.append(row)
        print(f"{name:28s} train {row['train_s']:.2f} s  total {row['total_s']:.2f} s  acc {row['acc']:.2%} "
              f"(no TTA {row['acc_no_tta']:.2%})  epochs s {runs[-1]['epoch_s']}", flush=True)  # fmt: skip
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    date = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    meta = dict(device=device, torch=torch.__version__, cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version(),
                date=date, source=args.source, seeds=args.seeds, held_out=10_000)  # fmt: skip
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"cifar_sweep_{device.replace(' ', '-')}_{date[:10]}{args.tag}"
    (out / f"{stem}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    head = "| variant | train s | total s | test acc (TTA) | test acc (no TTA) |\n|---|---|---|---|---|"
    lines = [f"# cifar10-fast ablations: {device}, torch {meta['torch']}, {date}, seeds {args.seeds}", "", head]
    lines += [f"| {r['variant']} | {r['train_s']:.2f} | {r['total_s']:.2f} | {r['acc']:.2%} | {r['acc_no_tta']:.2%} |"
              for r in rows]  # fmt: skip
    (out / f"{stem}.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
