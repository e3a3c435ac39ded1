"""Resident vs streamed training data on one GPU: images/s per epoch of the folder-fast recipe.

    PYTHONPATH=src python benchmarks/stream_speed.py FOLDER [--epochs 2] [--out benchmarks/results]

`device`: the decoded uint8 set on the GPU; `stream`: JPEG bytes in pinned memory, decoded on the GPU per batch;
`pinned`: the decoded set in pinned host memory, copied per batch on a side stream.
"""

from __future__ import annotations

import argparse
import datetime
import json
import time
from pathlib import Path

import torch

import convforge
from convforge.recipes.folder_fast import HYP


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("folder")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()
    rows = []
    for placement in ("device", "stream", "pinned"):
        torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        result = convforge.train(
            args.folder,
            **{**HYP, "epochs": args.epochs},
            data_placement=placement,
            split=(0.8, 0.2),
            device="cuda",
            out=f"/tmp/stream-{placement}",
            progress=False,
            log=lambda s: None,
        )
        rows.append(
            {
                "placement": placement,
                "images_per_s": [h["images_per_s"] for h in result.history],
                "wall_s": round(time.perf_counter() - t0, 2),
                "test_accuracy": result.test_accuracy,
                "peak_mib": round(torch.cuda.max_memory_allocated() / 2**20),
            }
        )
        print(rows[-1], flush=True)
    meta = {
        "device": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "date": datetime.date.today().isoformat(),
        "folder": args.folder,
        "epochs": args.epochs,
        "rows": rows,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "stream_speed.json").write_text(json.dumps(meta, indent=2))
    lines = [
        f"# resident vs streamed data: {meta['device']}, torch {meta['torch']}, {meta['date']}",
        "",
        "| placement | images/s per epoch | wall s | test acc | peak MiB |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['placement']} | {', '.join(f'{v:,.0f}' for v in r['images_per_s'])} | {r['wall_s']} | "
        f"{r['test_accuracy']:.2%} | {r['peak_mib']} |"
        for r in rows
    ]
    (out / "stream_speed.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
