"""Generated CUDA program vs PyTorch eager, torch.compile (max-autotune) and ONNX Runtime CUDA, same GPU and model.

    PYTHONPATH=src python benchmarks/codegen_speed.py [--models digits-cnn alexnet resnet18] [--batches 1 32 256]
        [--variants native-fp32 native-tf32 native-fp16 cudnn-fp32 cudnn-tf32 cudnn-fp16] [--compile-batches 256]
        [--iters 100] [--no-onnx] [--workdir DIR [--build-only]] [--cudnn-find]
        [--compile-dtype fp32|fp16] [--compile-conv-backends ATEN]

Latency per forward pass with the input already on the GPU (CUDA events; median and p99 of --iters after warm-up)
and images/s = batch / median. Random seeded weights (speed does not depend on training). Variants are
BACKEND-PRECISION of the generated program: native-{fp32,tf32,fp16,bf16}, cudnn-{fp32,tf32,fp16,bf16} (cuDNN
algorithms from its heuristics, or timed with --cudnn-find; fp16/bf16 on NHWC activations). `torch eager fp32` is
PyTorch's default (cuDNN may use TF32); `torch eager fp32 strict` turns TF32 off, like `--precision fp32`.
--workdir keeps the generated projects so that a `--build-only` run (CPU) can overlap other work and a later run only
times them. Results are merged into benchmarks/results/codegen_speed.json / .md: a new row replaces the row of the
same model, implementation, batch.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from convforge.cudagen import codegen  # noqa: E402
from convforge.cudagen._random_run import make_run  # noqa: E402
from convforge.cudagen.bench import bench_project  # noqa: E402

SHAPES = {"digits-cnn": ((1, 28, 28), 10), "alexnet": ((3, 224, 224), 10), "resnet18": ((3, 224, 224), 10)}
RESULTS = Path(__file__).parent / "results"
VARIANTS = ("native-fp32", "native-tf32", "native-fp16", "cudnn-fp32", "cudnn-tf32", "cudnn-fp16")
CHOICES = (*VARIANTS, "native-bf16", "cudnn-bf16")


def time_torch(fn, x: torch.Tensor, iters: int) -> dict:
    with torch.no_grad():
        for _ in range(10):
            fn(x)
        torch.cuda.synchronize()
        ms = []
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        for _ in range(iters):
            start.record()
            fn(x)
            end.record()
            end.synchronize()  # host sync per iteration: latency of one call, like the generated program's bench
            ms.append(start.elapsed_time(end))
    ms.sort()
    median, p99 = ms[len(ms) // 2], ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    return dict(median_ms=median, p99_ms=p99, images_per_s=x.shape[0] * 1000 / median)


def ort_session(run, path: Path):
    try:
        import onnxruntime as ort
    except ImportError:
        return None, "onnxruntime not installed"
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return None, "onnxruntime has no CUDA provider here"
    from convforge.cudagen.export import export

    if hasattr(ort, "preload_dlls"):  # CUDA / cuDNN from the nvidia-* wheels PyTorch installed
        ort.preload_dlls()
    onnx_path = export(run, path / "model.onnx", "onnx")
    sess = ort.InferenceSession(str(onnx_path), providers=["CUDAExecutionProvider"])
    if sess.get_providers()[0] != "CUDAExecutionProvider":  # ORT falls back to the CPU when the provider fails
        return None, f"onnxruntime's CUDA provider did not load (running on {sess.get_providers()})"
    return sess, None


def build_all(args, tmp: Path) -> tuple[dict, dict]:
    """Generate and compile every (model, variant) in parallel: the nvcc runs dominate otherwise. Projects already
    built in --workdir are reused."""
    from convforge.run import Run

    runs = {}
    for name in args.models:
        in_shape, classes = SHAPES[name]
        path = tmp / f"run-{name}"
        done = (path / "model.safetensors").is_file()
        runs[name] = Run.open(path) if done else make_run(path, name, in_shape=in_shape, num_classes=classes)

    def one(key):
        name, variant = key
        backend, precision = variant.split("-")
        out = tmp / f"out-{name}-{variant}"
        if not (out / "classify").is_file():
            codegen(runs[name], out, backend=backend, precision=precision, max_batch=max(args.batches), build=True)
        return key, out

    keys = [(n, v) for n in args.models for v in args.variants]
    with ThreadPoolExecutor(len(keys)) as pool:
        return runs, dict(pool.map(one, keys))


def bench_model(name: str, args, tmp: Path, run, outs: dict) -> list[dict]:
    in_shape, _ = SHAPES[name]
    rows = []
    if args.cudnn_find:
        os.environ["CF_CUDNN_FIND"] = "1"  # the programs inherit it: timed algorithm search at first use
    for variant in args.variants:
        for r in bench_project(outs[(name, variant)], args.batches, args.iters):
            impl = f"convforge {variant.replace('-', ' ')}"
            rows.append(dict(model=name, impl=impl, batch=r["batch"], **_timing(r)))
    model = run.load_model("cuda")
    for batch in args.batches:
        x = torch.randn(batch, *in_shape, device="cuda")
        rows.append(dict(model=name, impl="torch eager fp32", batch=batch, **time_torch(model, x, args.iters)))
        old = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
        rows.append(dict(model=name, impl="torch eager fp32 strict", batch=batch, **time_torch(model, x, args.iters)))
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old
        with torch.autocast("cuda", torch.float16):
            rows.append(dict(model=name, impl="torch eager fp16 autocast", batch=batch,
                             **time_torch(model, x, args.iters)))  # fmt: skip
    sess, why = ort_session(run, tmp / f"onnx-{name}") if args.onnx else (None, "--no-onnx")
    for batch in args.batches if sess else []:
        import onnxruntime  # ort_session found it

        x = np.random.default_rng(0).normal(size=(batch, *in_shape)).astype(np.float32)
        feed = {sess.get_inputs()[0].name: x}  # session.run on numpy: ORT's plain API, with host<->device copies
        rows.append(dict(model=name, impl="onnxruntime cuda (host I/O)", batch=batch,
                         **_wall_stats(partial(sess.run, None, feed), args.iters, batch)))  # fmt: skip
        # the input and output on the GPU (IO binding), as the other rows: what the CUDA provider itself takes
        binding = sess.io_binding()
        x_gpu = onnxruntime.OrtValue.ortvalue_from_numpy(x, "cuda", 0)
        binding.bind_ortvalue_input(sess.get_inputs()[0].name, x_gpu)
        binding.bind_output(sess.get_outputs()[0].name, "cuda")
        # run_with_iobinding returns once the CUDA stream is done
        rows.append(dict(model=name, impl="onnxruntime cuda (device I/O)", batch=batch,
                         **_wall_stats(partial(sess.run_with_iobinding, binding), args.iters, batch)))  # fmt: skip
    if why:
        print(f"{name}: onnxruntime skipped ({why})", flush=True)
    import torch._inductor.config as inductor_config

    if args.compile_conv_backends:  # Triton conv autotuning took ~90 s per resnet18 layer (fp32, H200)
        inductor_config.max_autotune_conv_backends = args.compile_conv_backends
    label = f"torch.compile {args.compile_mode}"
    if args.compile_dtype == "fp16":
        model = model.half().to(memory_format=torch.channels_last)
        label += " fp16"
    if args.compile_conv_backends:
        label += f" (conv: {args.compile_conv_backends})"
    for batch in args.compile_batches:
        t0 = time.time()
        compiled = torch.compile(model, mode=args.compile_mode)
        x = torch.randn(batch, *in_shape, device="cuda")
        if args.compile_dtype == "fp16":
            x = x.half().contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            compiled(x)
        secs = time.time() - t0
        timing = time_torch(compiled, x, args.iters)
        rows.append(dict(model=name, impl=label, batch=batch, compile_s=secs, **timing))
        torch._dynamo.reset()
    return rows


def _wall_stats(call, iters: int, batch: int) -> dict:
    """Host wall time of ``call`` (synchronous) after 10 warm-up calls: median and p99 ms, images/s."""
    ms = []
    for i in range(iters + 10):
        t = time.perf_counter()
        call()
        if i >= 10:
            ms.append((time.perf_counter() - t) * 1000)
    ms.sort()
    median = ms[len(ms) // 2]
    return dict(median_ms=median, p99_ms=ms[int(len(ms) * 0.99) - 1], images_per_s=batch * 1000 / median)


def _timing(r: dict) -> dict:
    return dict(median_ms=r["median_ms"], p99_ms=r["p99_ms"], images_per_s=r["images_per_s"])


def write_results(rows: list[dict], args, old_rows: list[dict]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    info = dict(
        device=torch.cuda.get_device_name(0), torch=torch.__version__, cuda=torch.version.cuda,
        cudnn=torch.backends.cudnn.version(), python=platform.python_version(),
        date=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), iters=args.iters,
        method="CUDA events around one forward pass, input on the GPU, host sync per call; median and p99",
    )  # fmt: skip
    for r in rows:
        r.setdefault("device", info["device"])
        r.setdefault("date", info["date"][:10])
    new = {(r["model"], r["impl"], r["batch"]) for r in rows}
    merged = [r for r in old_rows if (r["model"], r["impl"], r["batch"]) not in new] + rows
    order = {m: i for i, m in enumerate(dict.fromkeys(r["model"] for r in merged))}
    merged.sort(key=lambda r: (order[r["model"]], r["batch"], r["impl"]))
    (RESULTS / "codegen_speed.json").write_text(json.dumps(dict(info=info, rows=merged), indent=2) + "\n")
    lines = [
        f"# codegen speed (latest run: {info['device']}, torch {info['torch']}, CUDA {info['cuda']}, "
        f"cuDNN {info['cudnn']}, {info['date']})",
        "",
        "Input on the GPU, one forward pass per timed call (CUDA events, host sync per call). `torch eager fp32` is "
        "PyTorch's default (cuDNN convolutions may use TF32); `strict` turns TF32 off. `convforge cudnn` uses cuDNN's "
        f"heuristics{' (timed search: --cudnn-find)' if args.cudnn_find else ''}. Compare timings within one device.",
        "",
    ]
    lines += [
        "| model | implementation | batch | median ms | p99 ms | images/s | device | date |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in merged:
        lines.append(f"| {r['model']} | {r['impl']} | {r['batch']} | {r['median_ms']:.3f} | {r['p99_ms']:.3f} | "
                     f"{r['images_per_s']:.0f} | {r['device']} | {r['date']} |")  # fmt: skip
    (RESULTS / "codegen_speed.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 32, 256])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(CHOICES))
    ap.add_argument("--compile-batches", nargs="*", type=int, default=[256])
    ap.add_argument("--compile-mode", default="max-autotune")
    ap.add_argument(
        "--compile-dtype",
        choices=["fp32", "fp16"],
        default="fp32",
        help="fp16: the model in half precision, channels_last (the fair rival of the fp16 programs)",
    )
    ap.add_argument(
        "--compile-conv-backends",
        default="",
        help="inductor's max_autotune_conv_backends, e.g. ATEN (cuDNN only: no Triton conv autotuning)",
    )
    ap.add_argument("--iters", type=int, default=100)
    ap.add_argument("--onnx", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--cudnn-find", action="store_true", help="time cuDNN's algorithms (CF_CUDNN_FIND=1)")
    ap.add_argument("--workdir", help="keep generated projects here (reused when already built)")
    ap.add_argument("--build-only", action="store_true", help="generate and build, time nothing (needs --workdir)")
    args = ap.parse_args()
    old = RESULTS / "codegen_speed.json"
    old_rows = json.loads(old.read_text())["rows"] if old.is_file() else []
    old_device = json.loads(old.read_text())["info"]["device"] if old.is_file() else "?"
    for r in old_rows:
        r.setdefault("device", old_device)
        r.setdefault("date", json.loads(old.read_text())["info"]["date"][:10])
    with tempfile.TemporaryDirectory() as scratch:
        tmp = Path(args.workdir or scratch)
        tmp.mkdir(parents=True, exist_ok=True)
        t0 = time.time()
        runs, outs = build_all(args, tmp)
        print(f"generated and built {len(outs)} projects in {time.time() - t0:.0f} s", flush=True)
        if args.build_only:
            return
        rows: list[dict] = []
        for name in args.models:
            rows += bench_model(name, args, tmp, runs[name], outs)
            write_results(rows, args, old_rows)  # after each model: a cut-off run keeps what it measured


if __name__ == "__main__":
    main()
