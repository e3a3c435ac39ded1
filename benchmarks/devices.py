"""CPU vs GPU vs cuDNN on one recipe: a thin wrapper over `convforge.bench.devices.bench_devices`.

    PYTHONPATH=src python benchmarks/devices.py --source mnist --data-dir .data/mnist --epochs 2 --batch-size 128

Copies the study's results.json and report.md to benchmarks/results/devices_<device>_<date>.json/.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import shutil
from pathlib import Path

from convforge.bench.devices import bench_devices


def save_results(study_out: Path, results: Path, prefix: str, device: str) -> None:
    tag = re.sub(r"[^a-z0-9]+", "-", device.lower()).strip("-")
    stem = f"{prefix}_{tag}_{dt.date.today():%Y%m%d}"
    results.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(study_out / "results.json", results / f"{stem}.json")
    shutil.copyfile(study_out / "report.md", results / f"{stem}.md")
    print(f"results: {results / stem}.json/.md")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--source", default="digits")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--model", default="digits-cnn")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--threads", default=None, help="comma-separated CPU thread counts [default: 1,all cores]")
    p.add_argument("--out", default=None, help="study folder [default: studies/bench-devices-<time>]")
    p.add_argument("--results", default="benchmarks/results")
    a = p.parse_args()
    import torch

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    opts = {"data_dir": a.data_dir} if a.data_dir else {}
    r = bench_devices(
        a.source,
        epochs=a.epochs,
        threads=[int(t) for t in a.threads.split(",")] if a.threads else None,
        out=a.out,
        model=a.model,
        batch_size=a.batch_size,
        **opts,
    )
    print(r.text)
    save_results(r.out, Path(a.results), "devices", device)


if __name__ == "__main__":
    main()
