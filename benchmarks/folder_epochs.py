"""folder-fast's accuracy and training time per epoch count, 5 seeds each, on train_speed.py's split (1,500 of
Imagenette-128's 6,500 images held out); the decoded cache is shared (decoding is not what this measures).

    PYTHONPATH=src python3 benchmarks/folder_epochs.py IMAGENETTE.tar.gz OUT.json [EPOCHS ...]   (default: 45 40)
"""

from __future__ import annotations

import json
import sys
import tempfile
import time

import convforge.recipes  # noqa: F401  registers folder-fast
from convforge import api

SPLIT = (0.7692, 0.0, 0.2308)  # bench_folder's (convforge/bench/train.py)


def main() -> None:
    source, out = sys.argv[1], sys.argv[2]
    counts = [int(e) for e in sys.argv[3:]] or [45, 40]
    cache = tempfile.mkdtemp()
    results = {}
    for epochs in counts:
        rows = []
        for seed in range(5):
            with tempfile.TemporaryDirectory() as tmp:
                start = time.perf_counter()
                r = api.train(source, recipe="folder-fast", seed=seed, out=f"{tmp}/r", progress=False,
                              log=lambda s: None, split=SPLIT, cache_dir=cache, epochs=epochs)  # fmt: skip
                train_s = sum(h["time_s"] for h in r.history)
                total_s = time.perf_counter() - start
            rows.append(dict(seed=seed, acc=round(r.test_accuracy * 100, 2), train_s=round(train_s, 2),
                             total_s=round(total_s, 2)))  # fmt: skip
        accs = [row["acc"] for row in rows]
        print(f"epochs {epochs}: mean {sum(accs) / len(accs):.2f}%, min {min(accs)}%, "
              f"train s {[row['train_s'] for row in rows]}", flush=True)  # fmt: skip
        results[epochs] = rows
    with open(out, "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
