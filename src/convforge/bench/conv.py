"""bench conv: forward/backward time, memory and TFLOP/s of convolution implementations on real layer shapes.

Layer shapes of AlexNet (one-weird-trick/torchvision variant), VGG-11 and ResNet-18 at ImageNet size, as in the
published GPU CNN performance studies (convnet-benchmarks, Lavin & Gray 2016, Li et al. 2016). Every output is
checked against float64 F.conv2d of the same (rounded) inputs before it is timed.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import ConfigError
from .conv_impls import applicable, implementations, strict_fp32


@dataclass(frozen=True)
class ConvShape:
    net: str
    layer: str
    c: int  # input channels
    k: int  # output channels
    size: int  # input height = width
    kernel: int
    stride: int = 1
    padding: int = 0

    def flops(self, batch: int) -> float:
        """Multiply-adds x 2 of the forward pass."""
        p = (self.size + 2 * self.padding - self.kernel) // self.stride + 1
        return 2.0 * batch * self.k * self.c * self.kernel**2 * p * p

    @property
    def label(self) -> str:
        return f"{self.c}>{self.k} {self.size}px k{self.kernel}" + (f"/s{self.stride}" if self.stride > 1 else "")


SHAPES = (
    ConvShape("alexnet", "conv1", 3, 64, 224, 11, 4, 2),
    ConvShape("alexnet", "conv2", 64, 192, 27, 5, 1, 2),
    ConvShape("alexnet", "conv3", 192, 384, 13, 3, 1, 1),
    ConvShape("alexnet", "conv4", 384, 256, 13, 3, 1, 1),
    ConvShape("alexnet", "conv5", 256, 256, 13, 3, 1, 1),
    ConvShape("vgg11", "conv1", 3, 64, 224, 3, 1, 1),
    ConvShape("vgg11", "conv2", 64, 128, 112, 3, 1, 1),
    ConvShape("vgg11", "conv3", 128, 256, 56, 3, 1, 1),
    ConvShape("vgg11", "conv5", 256, 512, 28, 3, 1, 1),
    ConvShape("vgg11", "conv7", 512, 512, 14, 3, 1, 1),
    ConvShape("resnet18", "conv1", 3, 64, 224, 7, 2, 3),
    ConvShape("resnet18", "layer1", 64, 64, 56, 3, 1, 1),
    ConvShape("resnet18", "layer2", 128, 128, 28, 3, 1, 1),
    ConvShape("resnet18", "layer3", 256, 256, 14, 3, 1, 1),
    ConvShape("resnet18", "layer4", 512, 512, 7, 3, 1, 1),
)
SMALL_SHAPES = (  # for CPU and tests: the same layer kinds at toy size
    ConvShape("tiny", "k3", 8, 16, 16, 3, 1, 1),
    ConvShape("tiny", "k5", 4, 8, 12, 5, 1, 2),
    ConvShape("tiny", "k7s2", 3, 8, 20, 7, 2, 3),
)
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
TOLERANCE = {"fp32": 1e-4, "bf16": 3e-2}  # relative L2 error against float64 of the same inputs


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_ms(fn: Callable[[], Any], device: torch.device, budget_s: float = 0.05, max_reps: int = 20) -> float:
    """Median milliseconds of `fn` after one warm-up; repetitions fill about `budget_s` (3 to max_reps)."""
    fn()
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    first = time.perf_counter() - t0
    reps = max(3, min(max_reps, int(budget_s / max(first, 1e-6))))
    times = []
    for _ in range(reps):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def rel_error(out: torch.Tensor, x: torch.Tensor, w: torch.Tensor, shape: ConvShape) -> float:
    ref = torch.nn.functional.conv2d(x.double(), w.double(), stride=shape.stride, padding=shape.padding)
    if out.shape != ref.shape:
        return math.inf
    return ((out.double() - ref).norm() / ref.norm()).item()


def measure(fn, shape: ConvShape, batch: int, dtype: str, device: torch.device) -> dict[str, Any]:
    """Check, then time forward (no grad) and forward+backward (grads of input and weights) of one impl."""
    gen = torch.Generator(device=device).manual_seed(batch * 1000 + shape.c)
    x = torch.randn(batch, shape.c, shape.size, shape.size, device=device, generator=gen).to(DTYPES[dtype])
    w = (
        torch.randn(shape.k, shape.c, shape.kernel, shape.kernel, device=device, generator=gen)
        / math.sqrt(shape.c * shape.kernel**2)
    ).to(DTYPES[dtype])
    with torch.no_grad():
        err = rel_error(fn(x, w, shape.stride, shape.padding), x, w, shape)
    if not err <= TOLERANCE[dtype]:
        return {"error": err, "ok": False}
    if getattr(fn, "forward_only", False):  # no autograd (codegen): forward time only, n/a for the rest
        fwd = time_ms(lambda: fn(x, w, shape.stride, shape.padding), device)
        return dict(error=err, ok=True, forward_only=True, fwd_ms=fwd, fwd_tflops=shape.flops(batch) / fwd / 1e9)
    x.requires_grad_(True)
    w.requires_grad_(True)
    grad = torch.randn_like(fn(x, w, shape.stride, shape.padding).detach())

    def forward():
        with torch.no_grad():
            fn(x, w, shape.stride, shape.padding)

    def forward_backward():
        x.grad = w.grad = None
        fn(x, w, shape.stride, shape.padding).backward(grad)

    fwd = time_ms(forward, device)
    total = time_ms(forward_backward, device)
    row = {
        "error": err,
        "ok": True,
        "fwd_ms": fwd,
        "bwd_ms": max(total - fwd, 0.0),
        "total_ms": total,
        "fwd_tflops": shape.flops(batch) / fwd / 1e9,
        "total_tflops": 3 * shape.flops(batch) / total / 1e9,
    }
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        forward_backward()
        torch.cuda.synchronize(device)
        row["mem_mib"] = (torch.cuda.max_memory_allocated(device) - base) / 2**20
    return row


def run_conv_bench(
    shapes: Sequence[ConvShape] = SHAPES,
    batches: Sequence[int] = (16,),
    dtypes: Sequence[str] = ("fp32", "bf16"),
    device: str = "auto",
    impls: Sequence[str] | None = None,
    time_limit_s: float | None = None,
    log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """One row per (shape, batch, dtype): every implementation's numbers and the fastest one."""
    dev = torch.device(
        "cuda" if device == "auto" and torch.cuda.is_available() else ("cpu" if device == "auto" else device)
    )
    for d in dtypes:
        if d not in DTYPES:
            raise ConfigError(f"--dtype must be one of {', '.join(DTYPES)}, not {d!r}")
    available = implementations(dev)
    chosen = {n: f for n, f in available.items() if impls is None or n in impls}
    unknown = [n for n in impls or () if n not in available]
    if unknown:
        raise ConfigError(
            f"unknown conv implementation '{unknown[0]}' on {dev.type}; choose from {', '.join(available)}"
        )
    started, rows = time.perf_counter(), []
    with strict_fp32():
        for batch in batches:  # all shapes at the first batch size first: a time limit cuts the larger batches
            for shape in shapes:
                for dtype in dtypes:
                    if time_limit_s and time.perf_counter() - started > time_limit_s:
                        log(f"time limit of {time_limit_s:g} s reached; later shapes skipped")
                        return rows
                    rows.append(_row(shape, batch, dtype, chosen, dev))
                    log(_progress_line(rows[-1]))
    return rows


def _row(shape: ConvShape, batch: int, dtype: str, impls: dict, dev: torch.device) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for name, fn in impls.items():
        if not applicable(name, shape.kernel, shape.stride):
            results[name] = {"skipped": "3x3 stride 1 only"}
            continue
        try:
            results[name] = measure(fn, shape, batch, dtype, dev)
        except torch.OutOfMemoryError:
            results[name] = {"skipped": "out of memory"}
        except RuntimeError as e:  # e.g. a kernel missing for this dtype
            results[name] = {"skipped": str(e).splitlines()[0][:120]}
        finally:
            if dev.type == "cuda":
                torch.cuda.empty_cache()
    timed = {n: r["total_ms"] for n, r in results.items() if "total_ms" in r}
    fastest = min(timed, key=timed.get) if timed else None
    return {
        **asdict(shape),
        "shape": shape.label,
        "batch": batch,
        "dtype": dtype,
        "gflop": shape.flops(batch) / 1e9,
        "fastest": fastest,
        "impls": results,
    }


def _progress_line(row: dict[str, Any]) -> str:
    best = row["fastest"]
    ms = f"{row['impls'][best]['total_ms']:.3f} ms" if best else "-"
    return f"{row['net']}.{row['layer']} b{row['batch']} {row['dtype']}: fastest {best} ({ms})"


# -- report -----------------------------------------------------------------------------------------------------
def _cell(result: dict[str, Any], key: str, fmt: str) -> str:
    if "skipped" in result:
        return "n/a" if result["skipped"].startswith(("3x3", "fp32 only")) else "skip"
    if not result.get("ok"):
        return "FAIL"
    if result.get("forward_only") and key not in ("fwd_ms", "fwd_tflops"):
        return "n/a"
    return format(result[key], fmt) if result.get(key) is not None else "-"


def conv_tables(rows: list[dict[str, Any]]) -> tuple[str, str]:
    """(terminal text, markdown): fwd/bwd ms per implementation, then TFLOP/s and memory; fastest marked *."""
    from ..studies._common import render

    names = list(dict.fromkeys(n for row in rows for n in row["impls"]))
    head = [
        ("layer", "layer", ""),
        ("shape", "shape", ""),
        ("batch", "N", "d"),
        ("dtype", "dtype", ""),
        ("gflop", "GFLOP", ".3g"),
    ]
    tables = {"time": [], "tflops": [], "mem": []}
    for row in rows:
        base = {
            "layer": f"{row['net']}.{row['layer']}",
            "shape": row["shape"],
            "batch": row["batch"],
            "dtype": row["dtype"],
            "gflop": row["gflop"],
        }
        for kind, key, fmt in (("time", None, ""), ("tflops", "total_tflops", ".3g"), ("mem", "mem_mib", ",.0f")):
            cells = {}
            for n in names:
                r = row["impls"].get(n, {"skipped": "absent"})
                cells[n] = (
                    _cell(r, "fwd_ms", ".3f") + " / " + _cell(r, "bwd_ms", ".3f")
                    if kind == "time" and r.get("ok")
                    else _cell(r, key or "total_ms", fmt or ".3f")
                )
                if n == row["fastest"]:
                    cells[n] += " *"
            tables[kind].append({**base, **cells})
    cols = head + [(n, n, "") for n in names]
    text, md_time = render(tables["time"], cols)
    _, md_tflops = render(tables["tflops"], cols)
    md = [
        "## forward / backward time, ms (median; * = fastest forward+backward)",
        "",
        md_time,
        "",
        "## achieved TFLOP/s, forward+backward (3x the forward FLOPs)",
        "",
        md_tflops,
    ]
    if any("mem_mib" in r for row in rows for r in row["impls"].values()):
        _, md_mem = render(tables["mem"], cols)
        md += ["", "## peak extra GPU memory of forward+backward, MiB", "", md_mem]
    return text, "\n".join(md)


def conv_plot(rows: list[dict[str, Any]], path: Path) -> Path:
    """Forward+backward ms per implementation and layer (log scale), for the first dtype and largest batch."""
    from ..studies._common import plt, save_figure

    if not rows:
        fig, ax = plt.subplots()
        ax.text(0.5, 0.5, "no shapes measured", ha="center")
        return save_figure(fig, path)
    dtype, batch = rows[0]["dtype"], max(r["batch"] for r in rows)
    picked = [r for r in rows if r["dtype"] == dtype and r["batch"] == batch]
    names = list(dict.fromkeys(n for r in picked for n in r["impls"]))
    width = 0.8 / len(names)
    fig, ax = plt.subplots(figsize=(max(8, 0.9 * len(picked)), 4.5))
    for i, n in enumerate(names):
        ys = [r["impls"][n].get("total_ms", float("nan")) if r["impls"][n].get("ok") else float("nan") for r in picked]
        ax.bar([j + i * width for j in range(len(picked))], ys, width, label=n)
    ax.set_xticks(
        [j + 0.4 - width / 2 for j in range(len(picked))],
        [f"{r['net']}.{r['layer']}" for r in picked],
        rotation=45,
        ha="right",
    )
    ax.set_yscale("log")
    ax.set(ylabel="forward+backward ms (log)", title=f"convolution implementations, batch {batch}, {dtype}")
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3, axis="y")
    return save_figure(fig, path)


def bench_conv(
    *,
    out: str | Path | None = None,
    small: bool = False,
    batches: Sequence[int] | None = None,
    dtypes: Sequence[str] = ("fp32", "bf16"),
    device: str = "auto",
    impls: Sequence[str] | None = None,
    time_limit_s: float | None = None,
    log: Callable[[str], None] = print,
):
    """The study: rows, tables, conv.png, results.json and report.md in a study folder."""
    from ..inference import resolve_device
    from ..studies._common import StudyResult, study_dir, write_report

    dev = resolve_device(device)
    small = small or dev.type == "cpu"
    shapes = SMALL_SHAPES if small else SHAPES
    batches = tuple(batches or ((2, 8) if small else (16, 64)))
    if min(batches) <= 0:
        raise ConfigError(f"--batch sizes must be positive, not {batches}")
    folder = study_dir("bench-conv", out)
    rows = run_conv_bench(shapes, batches, dtypes, str(dev), impls, time_limit_s, log)
    text, md = conv_tables(rows)
    files = {"plot": conv_plot(rows, folder / "conv.png")}
    notes = [
        "direct = sum over kernel taps of strided slices x tap weights (no im2col buffer); aten-nocudnn = "
        "F.conv2d with cuDNN disabled (PyTorch's native im2col+GEMM kernel); fft computes bf16 in fp32",
        "cuDNN: PyTorch exposes only heuristic (benchmark off), autotuned (benchmark on) and deterministic; "
        "a named algorithm (IMPLICIT_GEMM, FFT, WINOGRAD, ...) cannot be forced",
        "TFLOP/s are effective: the direct convolution's FLOP count over the time, so algorithms doing fewer "
        "multiplies (cuDNN Winograd/FFT) can pass the fp32 peak",
        "fp32 is IEEE fp32 (TF32 off); every output was checked against float64 F.conv2d (fp32 1e-4, bf16 3e-2 "
        "relative L2) before timing; FAIL = check failed, n/a = shape, dtype or pass not supported, "
        "skip = out of memory",
        "codegen column: "
        + (
            "present (forward only: n/a for its backward, forward+backward TFLOP/s and memory)"
            if any("codegen" in r["impls"] for r in rows)
            else "absent (no CUDA, no nvcc or the build failed: see the log)"
        ),
    ]
    files.update(
        write_report(
            folder,
            f"Convolution implementations ({dev.type})",
            md,
            rows,
            {"device": str(dev), "batches": list(batches), "dtypes": list(dtypes)},
            notes,
        )
    )
    return StudyResult("bench-conv", folder, rows, text, md, files)
