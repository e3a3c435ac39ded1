"""folder-fast's accuracy and training time per variant (epoch count, solver...), 5 seeds each, on train_speed.py's
split (1,500 of Imagenette-128's 6,500 images held out); the decoded cache is shared (decoding is not what this
measures).

    PYTHONPATH=src python3 benchmarks/folder_epochs.py IMAGENETTE.tar.gz OUT.json [EPOCHS ...]   (default: 45 40)
    PYTHONPATH=src python3 benchmarks/folder_epochs.py IMAGENETTE.tar.gz OUT.json \
        --variants '{"muon lr 0.2": {"solver": "muon", "lr": 0.2, "momentum": 0.6}}' [--seeds 3]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import convforge.recipes  # noqa: F401  registers folder-fast
from convforge import api

SPLIT = (0.7692, 0.0, 0.2308)  # bench_folder's (convforge/bench/train.py)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("source")
    ap.add_argument("out")
    ap.add_argument("epochs", nargs="*", type=int)
    ap.add_argument("--variants", default="", help="JSON: variant name -> train options (instead of EPOCHS)")
    ap.add_argument("--seeds", type=int, default=5)
    args = ap.parse_args()
    variants = json.loads(args.variants) if args.variants else {}
    variants = variants or {f"epochs {e}": {"epochs": e} for e in args.epochs or [45, 40]}
    cache = tempfile.mkdtemp()
    results = {}
    for name, options in variants.items():
        rows = []
        for seed in range(args.seeds):
            with tempfile.TemporaryDirectory() as tmp:
                start = time.perf_counter()
                r = api.train(args.source, recipe="folder-fast", seed=seed, out=f"{tmp}/r", progress=False,
                              log=lambda s: None, split=SPLIT, cache_dir=cache, **options)  # fmt: skip
                train_s = sum(h["time_s"] for h in r.history)
                total_s = time.perf_counter() - start
            rows.append(dict(seed=seed, acc=round(r.test_accuracy * 100, 2), train_s=round(train_s, 2),
                             total_s=round(total_s, 2)))  # fmt: skip
        accs = [row["acc"] for row in rows]
        print(f"{name}: mean {sum(accs) / len(accs):.2f}%, min {min(accs)}%, accs {accs}, "
              f"train s {[row['train_s'] for row in rows]}", flush=True)  # fmt: skip
        results[name] = dict(options=options, runs=rows)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
