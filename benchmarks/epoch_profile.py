"""The CUDA kernels of one steady-state epoch of a fast recipe (its captured steps), per step, and every epoch's time.

    PYTHONPATH=src CONVFORGE_CACHE=.data python3 benchmarks/epoch_profile.py SOURCE [--recipe cifar10-fast]
        [--epoch 5] [--out benchmarks/results/epoch_profile.txt]

One warm-up run of one epoch first (CUDA context, cuDNN, Triton), then a seeded run with torch.profiler around epoch
--epoch only (started and stopped from the run's on_epoch hook, so the profiler's own start-up is outside the epochs
before it)."""

from __future__ import annotations

import argparse
import tempfile

import torch
from torch.profiler import ProfilerActivity, profile

import convforge.recipes  # noqa: F401  registers the recipes
from convforge import api


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("source")
    ap.add_argument("--recipe", default="cifar10-fast")
    ap.add_argument("--epoch", type=int, default=5, help="the epoch to profile (1-based; not the first)")
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    quiet = dict(progress=False, log=lambda s: None)
    with tempfile.TemporaryDirectory() as tmp:
        api.train(args.source, recipe=args.recipe, seed=99, epochs=1, out=f"{tmp}/warm", **quiet)
        prof = profile(activities=[ProfilerActivity.CUDA])
        done = []

        def hook(row: dict) -> None:
            done.append(row)
            if len(done) == args.epoch - 1:
                prof.__enter__()
            elif len(done) == args.epoch:
                torch.cuda.synchronize()
                prof.__exit__(None, None, None)

        r = api.train(args.source, recipe=args.recipe, seed=0, out=f"{tmp}/run", on_epoch=hook, **quiet)
    epochs = [round(row["time_s"], 4) for row in r.history]
    events = prof.key_averages()
    total_us = sum(e.device_time_total for e in events if e.device_time_total)
    head = f"{args.recipe} on {torch.cuda.get_device_name()}, torch {torch.__version__}: epochs s {epochs}"
    head += f", sum {sum(epochs):.3f}; test acc {r.test_accuracy:.4f}; epoch {args.epoch}'s kernels {total_us:.0f} us"
    lines = [head, ""]
    lines.append(events.table(sort_by="device_time_total", row_limit=45, max_name_column_width=90))
    text = "\n".join(lines)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
