"""Convolution implementations on AlexNet/VGG-11/ResNet-18 layer shapes: a thin wrapper over
`convforge.bench.conv.bench_conv`.

    PYTHONPATH=src python benchmarks/conv_algorithms.py --batches 16,64 --time-limit 150

Copies the study's results.json and report.md to benchmarks/results/conv_<device>_<date>.json/.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from convforge.bench.conv import bench_conv

sys.path.insert(0, str(Path(__file__).parent))
from devices import save_results  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batches", default=None, help="comma-separated batch sizes [default: 16,64 on GPU]")
    p.add_argument("--dtypes", default="fp32,bf16")
    p.add_argument("--small", action="store_true", help="toy shapes (always on CPU)")
    p.add_argument("--time-limit", type=float, default=None, help="stop starting new shapes after this many s")
    p.add_argument("--out", default=None)
    p.add_argument("--results", default="benchmarks/results")
    a = p.parse_args()
    import torch

    batches = [int(b) for b in a.batches.split(",")] if a.batches else None
    r = bench_conv(out=a.out, small=a.small, batches=batches, dtypes=a.dtypes.split(","), time_limit_s=a.time_limit)
    print(r.text)
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    save_results(r.out, Path(a.results), "conv", device)


if __name__ == "__main__":
    main()
