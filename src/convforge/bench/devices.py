"""bench devices: one training recipe on CPU, GPU without cuDNN, GPU with cuDNN, cuDNN autotuned, convforge's path.

The reference reports' CPU vs GPU vs cuDNN table, done on one recipe: same data, model, solver, batch, seed and
epochs in every row; only the device and the backend switches change. GPU rows are fp32 with PyTorch's defaults
(cuDNN may use TF32); the last row is convforge's default GPU path (bf16 autocast, channels_last, fused solver,
cuDNN autotuning, and `compile`/`fast` when TrainConfig has such a field).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import statistics
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..engine.config import TrainConfig
from ..errors import ConfigError


@dataclass(frozen=True)
class Setting:
    name: str
    device: str
    precision: str = "fp32"
    cudnn: bool = True
    benchmark: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    what: str = ""


def _has_field(name: str) -> bool:
    return name in {f.name for f in dataclasses.fields(TrainConfig)}


def fast_options() -> dict[str, Any]:
    """TrainConfig switches of the engine's fast path, where it has them (compile is left out: its seconds of
    compile time do not pay in a few epochs)."""
    return {k: True for k in ("fast", "cuda_graphs") if _has_field(k)}


def plain_options() -> dict[str, Any]:
    """Switches that keep the plain GPU rows on the eager reference step (CUDA graphs default on with CUDA)."""
    return {k: False for k in ("fast", "cuda_graphs", "compile") if _has_field(k)}


def settings(threads: Sequence[int]) -> list[Setting]:
    fast, plain = fast_options(), plain_options()
    cpu = [
        Setting(
            f"cpu-{n}t",
            "cpu",
            extra={"threads": n} if _has_field("threads") else {},
            what=f"CPU, {n} thread{'s' if n > 1 else ''}, fp32",
        )
        for n in threads
    ]
    return cpu + [
        Setting(
            "gpu-nocudnn", "cuda", cudnn=False, extra=plain, what="GPU, cuDNN disabled (PyTorch's native conv), fp32"
        ),
        Setting("gpu-cudnn", "cuda", extra=plain, what="GPU, cuDNN heuristics (benchmark off), fp32"),
        Setting(
            "gpu-cudnn-autotune", "cuda", benchmark=True, extra=plain, what="GPU, cuDNN autotuned (benchmark on), fp32"
        ),
        Setting(
            "convforge-fast",
            "cuda",
            precision="auto",
            benchmark=True,
            extra=fast,
            what="convforge default GPU path: bf16 autocast, cuDNN autotuned"
            + (f", {', '.join(fast)}" if fast else ""),
        ),
    ]


@contextlib.contextmanager
def backend(s: Setting) -> Iterator[None]:
    old_threads = torch.get_num_threads()
    try:
        if s.device == "cpu":
            torch.set_num_threads(int(s.name.split("-")[1][:-1]))
        with torch.backends.cudnn.flags(
            enabled=s.cudnn, benchmark=s.benchmark, deterministic=False, allow_tf32=torch.backends.cudnn.allow_tf32
        ):
            yield
    finally:
        torch.set_num_threads(old_threads)


def _row(s: Setting, result, threads_seen: list[int]) -> dict[str, Any]:
    times = [h["time_s"] for h in result.history]
    steady = statistics.median(times[1:]) if len(times) > 1 else times[0]
    return {
        "setting": s.name,
        "what": s.what,
        "epochs": len(times),
        "first_epoch_s": round(times[0], 3),
        "epoch_s": round(steady, 3),
        "total_s": round(result.time_s, 3),
        "images_per_s": result.history[-1]["images_per_s"],
        "test_acc": result.test_accuracy,
        "torch_threads": threads_seen[-1] if threads_seen else None,
        "run": str(result.run.path),
    }


def bench_devices(
    source: str = "digits",
    *,
    epochs: int = 2,
    threads: int | Sequence[int] | None = None,
    out: str | Path | None = None,
    log: Callable[[str], None] = print,
    **options: Any,
):
    """Train the recipe once per setting; table, bar chart, results.json and report.md."""
    from ..api import train
    from ..studies._common import StudyResult, quiet_log, render, study_dir, write_report

    cores = os.cpu_count() or 1
    threads = tuple(dict.fromkeys([threads] if isinstance(threads, int) else (threads or (1, cores))))
    if min(threads) < 1 or epochs < 1:
        raise ConfigError("--threads and --epochs must be positive")
    for key in ("device", "precision", "out", "threads"):
        if key in options:
            raise ConfigError(f"bench devices sets --{key} itself for each row; leave it out")
    folder = study_dir("bench-devices", out)
    rows, skipped = [], []
    for s in settings(threads):
        if s.device == "cuda" and not torch.cuda.is_available():
            skipped.append(s.name)
            continue
        log(f"{s.name}: {s.what} ...")
        seen: list[int] = []  # torch's CPU thread count while training, read after each epoch

        def count_threads(row: dict[str, Any], seen: list[int] = seen) -> None:
            seen.append(torch.get_num_threads())

        with backend(s):
            result = train(
                source,
                device=s.device,
                precision=s.precision,
                epochs=epochs,
                out=str(folder / "runs" / s.name),
                progress=False,
                log=quiet_log,
                on_epoch=count_threads,
                **s.extra,
                **options,
            )
        rows.append(_row(s, result, seen))
    base = min(r["epoch_s"] for r in rows if r["setting"].startswith("cpu-"))  # the faster CPU row
    for row in rows:
        row["speedup"] = round(base / row["epoch_s"], 2) if row["epoch_s"] else None
    cols = [
        ("setting", "setting", ""),
        ("epochs", "epochs", "d"),
        ("first_epoch_s", "epoch 1 s", ".3f"),
        ("epoch_s", "epoch s", ".3f"),
        ("total_s", "total s", ".2f"),
        ("images_per_s", "img/s", ",.0f"),
        ("test_acc", "test acc", ".2%"),
        ("speedup", "speedup", ".2f"),
    ]
    text, md = render(rows, cols)
    if skipped:
        text += f"\nskipped (no CUDA GPU here): {', '.join(skipped)}"
    notes = [
        f"recipe: {source}, model {options.get('model', 'digits-cnn')}, {epochs} epochs, same seed in every row",
        "epoch s: median epoch after the first (warm-up, autotuning); speedup: fastest CPU row's epoch s / row's",
        *[f"{r['setting']}: {r['what']}" for r in rows],
    ]
    if skipped:
        notes.append(f"skipped, no CUDA GPU here: {', '.join(skipped)}")
    files = {"plot": _plot(rows, folder / "devices.png")}
    files.update(
        write_report(
            folder,
            "CPU vs GPU vs cuDNN",
            md,
            rows,
            {"source": source, "epochs": epochs, "options": options, "skipped": skipped},
            notes,
        )
    )
    return StudyResult("bench-devices", folder, rows, text, md, files, extra={"skipped": skipped})


def _plot(rows: list[dict[str, Any]], path: Path) -> Path:
    from ..studies._common import plt, save_figure

    fig, ax = plt.subplots(figsize=(7, 0.8 + 0.5 * len(rows)))
    names = [r["setting"] for r in rows][::-1]
    bars = ax.barh(names, [r["epoch_s"] for r in rows][::-1])
    for bar, r in zip(bars, rows[::-1]):
        ax.text(
            bar.get_width(),
            bar.get_y() + bar.get_height() / 2,
            f" {r['epoch_s']:.3g} s  x{r['speedup']:.1f}",
            va="center",
        )
    ax.set_xscale("log")
    ax.set(xlabel="seconds per epoch (log)", title="one recipe on CPU, GPU and cuDNN")
    return save_figure(fig, path)
