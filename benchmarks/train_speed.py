"""Training speed: plain PyTorch loop vs convforge (same recipe) vs the fast recipe, one process, one GPU.

Run on the GPU machine, e.g.
  PYTHONPATH=src python benchmarks/train_speed.py --mnist mnist --fashion fashion-mnist \
      --cifar .data/cifar10-jpg-train.tar.gz --folder .data/imagenette-128-train.tar.gz --seeds 5
MNIST and Fashion-MNIST are looked up offline (e.g. /usr/share/datasets/NAME).
Defaults: 5 seeds of plain, convforge and fast, 1 of convforge-eager: ~7 min on an H200 for the three reference
recipes (the plain loop alone is ~55 s a seed; --baseline-seeds 2 saves ~2.5 min, and the markdown then says so).
Peaks are measured from a clean allocator (cuBLAS workspaces of earlier runs freed: bench/train.py _peak_reset).
Writes benchmarks/results/train_speed_<device>_<date>.{json,md}. Logic: src/convforge/bench/train.py.
"""

from __future__ import annotations

import argparse
import json

from convforge.bench.train import bench_train

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ("mnist", "fashion", "cifar", "folder"):
        ap.add_argument(f"--{name}", default="", help=f"{name} source (empty: skip)")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--baseline-seeds", type=int, default=5)
    ap.add_argument("--eager-seeds", type=int, default=None, help="runs of convforge without graphs (default 1)")
    ap.add_argument(
        "--variants",
        default="{}",
        help='JSON: {"cifar-simple-cnn": {"fast ep8": {"epochs": 8}, '
        '"convforge compile": {"same_recipe": true, "compile": true}}}',
    )
    ap.add_argument("--tag", default="", help="suffix of the result file names, e.g. _round2")
    ap.add_argument("--out", default="benchmarks/results")
    a = ap.parse_args()
    names = {"mnist-digits-cnn": a.mnist, "fashion-mlp": a.fashion, "cifar-simple-cnn": a.cifar, "folder": a.folder}
    sources = {k: v for k, v in names.items() if v}
    bench_train(sources, a.seeds, a.baseline_seeds, a.out, eager_seeds=a.eager_seeds,
                variants=json.loads(a.variants), tag=a.tag)  # fmt: skip
