"""folder-fast's accuracy and training time per variant (epoch count, solver...), 5 seeds each, on train_speed.py's
split (1,500 of Imagenette-128's 6,500 images held out); the decoded cache is shared (decoding is not what this
measures).

    PYTHONPATH=src python3 benchmarks/folder_epochs.py IMAGENETTE.tar.gz OUT.json [EPOCHS ...]   (default: 45 40)
    PYTHONPATH=src python3 benchmarks/folder_epochs.py IMAGENETTE.tar.gz OUT.json \
        --variants '{"muon lr 0.2": {"solver": "muon", "lr": 0.2, "momentum": 0.6}}' [--seeds 3]
    PYTHONPATH=src python3 benchmarks/folder_epochs.py CIFAR10.tar.gz OUT.json 40 10 --held-out 0.2
        (a photo set folder-fast was not tuned on: 10,000 of CIFAR-10's 50,000 JPEGs held out)
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import tempfile
import time

import torch

import convforge.recipes  # noqa: F401  registers folder-fast
from convforge import api

HELD_OUT = 0.2308  # bench_folder's split of Imagenette-128 (convforge/bench/train.py): 1,500 of 6,500


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("source")
    ap.add_argument("out")
    ap.add_argument("epochs", nargs="*", type=int)
    ap.add_argument("--variants", default="", help="JSON: variant name -> train options (instead of EPOCHS)")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--held-out", type=float, default=HELD_OUT, help="the fraction held out for the test accuracy")
    args = ap.parse_args()
    variants = json.loads(args.variants) if args.variants else {}
    variants = variants or {f"epochs {e}": {"epochs": e} for e in args.epochs or [45, 40]}
    split = (1.0 - args.held_out, 0.0, args.held_out)
    cache = tempfile.mkdtemp()
    results = {}
    for name, options in variants.items():
        rows = []
        for seed in range(args.seeds):
            with tempfile.TemporaryDirectory() as tmp:
                start = time.perf_counter()
                r = api.train(args.source, recipe="folder-fast", seed=seed, out=f"{tmp}/r", progress=False,
                              log=lambda s: None, split=split, cache_dir=cache, **options)  # fmt: skip
                train_s = sum(h["time_s"] for h in r.history)
                total_s = time.perf_counter() - start
            rows.append(dict(seed=seed, acc=round(r.test_accuracy * 100, 2), train_s=round(train_s, 2),
                             total_s=round(total_s, 2)))  # fmt: skip
        accs = [row["acc"] for row in rows]
        print(f"{name}: mean {sum(accs) / len(accs):.2f}%, min {min(accs)}%, accs {accs}, "
              f"train s {[row['train_s'] for row in rows]}", flush=True)  # fmt: skip
        results[name] = dict(options=options, runs=rows)
    meta = dict(device=torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu", torch=torch.__version__,
                cuda=torch.version.cuda, date=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                source=args.source, held_out=args.held_out)  # fmt: skip
    with open(args.out, "w") as f:
        json.dump({"meta": meta, **results}, f, indent=1)


if __name__ == "__main__":
    main()
