"""Native convolution kernels against PyTorch: new (the default), nchw and legacy (CF_CONV_KERNELS=nchw|legacy).

    PYTHONPATH=src python3 benchmarks/conv_kernels.py --out DIR [--models alexnet resnet18]
        [--precisions fp32 tf32 fp16 bf16] [--kernels new nchw legacy] [--batches 1 32 256] [--iters 30]
        [--images 32] [--jobs 8] [--workdir W [--build-only]] [--compile-batches 256 [--compile-mode default]]

One generated project per (model, precision) at 224 px, random seeded weights, all built at once in threads (nvcc
dominates the run). Each binary then runs once per kernel kind, all from the same build: `new` is the default
(pipelined kernels; fp16/bf16 keep activations in T NHWC, cudagen/kernels/conv_nhwc.cuh), `nchw` the pipelined
kernels on fp32 NCHW activations (fp16/bf16 only: the same as `new` for fp32/tf32), `legacy` the previous
single-stage kernels. Correctness: the probabilities of --images synthetic images against the Run's PyTorch model
(fp32, TF32 off): max |diff| and top-1 agreement, pass/fail with the tolerances of cudagen/verify.py. Latency: the
program's --bench mode (CUDA events around one CUDA-graph replay, input on the GPU, host sync per call; median of
--iters after 20 warm-up runs). PyTorch eager rows of the same GPU for reference: fp32 with TF32 off (vs fp32),
TF32 on (vs tf32), fp16 / bf16 autocast; --compile-batches adds torch.compile (--compile-mode) of the same model in
the same mode, at those batch sizes only (compiling takes minutes). Writes DIR/conv_kernels.json and
DIR/conv_kernels.md; prints the table.
--build-only (CPU, no GPU needed) fills --workdir so that a later run only checks and times. Budget: under 4
minutes on an H200 with the defaults (builds about half of it).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from convforge.cudagen import generate  # noqa: E402
from convforge.cudagen._random_run import make_run  # noqa: E402
from convforge.cudagen.bench import bench_project  # noqa: E402
from convforge.cudagen.build import build_project  # noqa: E402
from convforge.cudagen.verify import compare, reference_probs, run_program, synthetic_images  # noqa: E402
from convforge.run import Run  # noqa: E402

IN_SHAPE, CLASSES = (3, 224, 224), 10
MODELS = ("alexnet", "resnet18")
PRECISIONS = ("fp32", "tf32", "fp16", "bf16")
KERNELS = ("new", "nchw", "legacy")


@contextlib.contextmanager
def kernel_env(kind: str):
    """The generated programs read CF_CONV_KERNELS at start-up (common.cuh); subprocesses inherit os.environ."""
    old = os.environ.pop("CF_CONV_KERNELS", None)
    if kind != "new":
        os.environ["CF_CONV_KERNELS"] = kind
    try:
        yield
    finally:
        os.environ.pop("CF_CONV_KERNELS", None)
        if old is not None:
            os.environ["CF_CONV_KERNELS"] = old


def build_all(args, root: Path) -> tuple[dict, dict]:
    """Runs per model, and {(model, precision): (project folder, build seconds, error or None)}."""
    runs = {}
    for m in args.models:
        path = root / f"run-{m}"
        done = (path / "model.safetensors").is_file()  # a --workdir of an earlier (--build-only) run
        runs[m] = Run.open(path) if done else make_run(path, m, in_shape=IN_SHAPE, num_classes=CLASSES)

    def one(key):
        model, precision = key
        out, t0 = root / f"{model}-{precision}", time.time()
        try:
            if not (out / "classify").is_file():
                generate(runs[model], out, backend="native", precision=precision, max_batch=max(args.batches))
                build_project(out, jobs=2)
            return key, (out, time.time() - t0, None)
        except Exception as e:  # noqa: BLE001  (reported in the table, the other projects still run)
            return key, (out, time.time() - t0, f"{type(e).__name__}: {e}")

    keys = [(m, p) for m in args.models for p in args.precisions]
    with ThreadPoolExecutor(min(args.jobs, len(keys))) as pool:
        return runs, dict(pool.map(one, keys))


def check_and_time(args, runs: dict, projects: dict) -> list[dict]:
    rows = []
    images = synthetic_images(IN_SHAPE, args.images, seed=1)
    for model in args.models:
        ref = reference_probs(runs[model], images)
        for precision in args.precisions:
            out, build_s, err = projects[(model, precision)]
            for kind in args.kernels:
                if kind == "nchw" and precision not in ("fp16", "bf16"):
                    continue  # fp32 / tf32 have no other layout: `new` is the NCHW path
                row = dict(model=model, precision=precision, kernels=kind, build_s=round(build_s, 1))
                if err:
                    rows.append(dict(row, error=err))
                    continue
                with kernel_env(kind):
                    try:
                        row["check"] = compare(run_program(out, images), ref, precision)
                        row["timing"] = bench_project(out, args.batches, args.iters)
                    except Exception as e:  # noqa: BLE001
                        row["error"] = f"{type(e).__name__}: {e}"
                rows.append(row)
                print(_progress(row), flush=True)
    return rows


def _progress(row: dict) -> str:
    if "error" in row:
        return f"{row['model']} {row['precision']} {row['kernels']}: ERROR {row['error'][:200]}"
    c = row["check"]
    ms = " ".join(f"b{t['batch']}={t['median_ms']:.3f}ms" for t in row["timing"])
    return (f"{row['model']} {row['precision']} {row['kernels']}: max|diff| {c['max_abs_diff']:.2e} top-1 "
            f"{c['top1_agreement']:.3f} {'ok' if c['passed'] else 'FAIL'}; {ms}")  # fmt: skip


def time_torch(model, x: torch.Tensor, iters: int) -> float:
    """Median ms of one eager forward pass (CUDA events, host sync per call, like the program's --bench)."""
    with torch.no_grad():
        for _ in range(5):
            model(x)
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        ms = []
        for _ in range(iters):
            start.record()
            model(x)
            end.record()
            end.synchronize()  # host sync per call
            ms.append(start.elapsed_time(end))
    return sorted(ms)[len(ms) // 2]


def torch_rows(args, runs: dict) -> dict:
    """{(model, precision, batch, "eager" | "compile"): ms} for PyTorch in the mode that matches each precision."""
    result = {}
    flags = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    for model_name in args.models:
        model = runs[model_name].load_model("cuda").eval()
        for batch in args.batches:
            x = torch.randn(batch, *IN_SHAPE, device="cuda")
            for precision in args.precisions:
                tf32 = precision == "tf32"
                torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = tf32
                dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision)
                with torch.autocast("cuda", dtype or torch.float16, enabled=dtype is not None):
                    result[(model_name, precision, batch, "eager")] = time_torch(model, x, args.iters)
                    if batch in args.compile_batches:
                        compiled = torch.compile(model, mode=args.compile_mode)
                        result[(model_name, precision, batch, "compile")] = time_torch(compiled, x, args.iters)
                        torch._dynamo.reset()
                print(f"torch {model_name} {precision} b{batch}: eager "
                      f"{result[(model_name, precision, batch, 'eager')]:.3f} ms", flush=True)  # fmt: skip
        del model
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = flags
    return result


def table(rows: list[dict], torch_ms: dict, args) -> list[str]:
    """One line per (model, precision, batch): each kernel kind's ms, PyTorch's, new vs PyTorch, the checks."""
    by = {(r["model"], r["precision"], r["kernels"]): r for r in rows}
    kinds, compiled = list(args.kernels), bool(args.compile_batches)
    head = ["model", "precision", "batch", *(f"{k} ms" for k in kinds), "torch eager ms"]
    head += ["torch.compile ms"] if compiled else []
    head += ["eager / new", *(["compile / new"] if compiled else []), "new max abs diff", "new top-1"]
    head += [f"checks ({' / '.join(kinds)})"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for model in args.models:
        for precision in args.precisions:
            got = {k: by.get((model, precision, k), {}) for k in kinds}
            for batch in args.batches:
                eager, comp = (torch_ms.get((model, precision, batch, w)) for w in ("eager", "compile"))
                t_new = _ms(got.get("new", {}), batch)
                cells = [model, precision, str(batch), *(_fmt(_ms(got[k], batch)) for k in kinds), _fmt(eager)]
                cells += [_fmt(comp)] if compiled else []
                cells += [_ratio(eager, t_new), *([_ratio(comp, t_new)] if compiled else [])]
                cells += [_diff(got.get("new", {})), _top1(got.get("new", {}))]
                cells += [" / ".join(_status(got[k]) for k in kinds)]
                lines.append("| " + " | ".join(cells) + " |")
    return lines


def _ratio(ref, ours) -> str:
    return f"{ref / ours:.2f}x" if ref and ours else "-"


def _ms(row: dict, batch: int):
    return next((t["median_ms"] for t in row.get("timing", []) if t["batch"] == batch), None)


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.3f}"


def _diff(row: dict) -> str:
    return f"{row['check']['max_abs_diff']:.1e}" if "check" in row else "-"


def _top1(row: dict) -> str:
    return f"{row['check']['top1_agreement']:.3f}" if "check" in row else "-"


def _status(row: dict) -> str:
    if not row:
        return "-"
    if "error" in row:
        return "error"
    return "pass" if row.get("check", {}).get("passed") else "FAIL"


def write(out: Path, rows: list[dict], torch_ms: dict, args, info: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    torch_list = [dict(model=m, precision=p, batch=b, impl=i, median_ms=v) for (m, p, b, i), v in torch_ms.items()]
    (out / "conv_kernels.json").write_text(json.dumps(dict(info=info, rows=rows, torch=torch_list), indent=2) + "\n")
    lines = [
        f"# native conv kernels: {' vs '.join(args.kernels)} ({info['device']}, torch {info['torch']}, {info['date']})",
        "",
        "Median ms of one forward pass, input on the GPU (the program's --bench, CUDA graph, host sync per call; "
        f"{args.iters} timed runs). Checks: {args.images} synthetic 224 px images vs PyTorch fp32 (TF32 off), "
        "tolerances of cudagen/verify.py. new: the default kernels (fp16/bf16: T NHWC activations); nchw / legacy: "
        "CF_CONV_KERNELS=nchw / legacy. torch eager (and torch.compile, mode "
        f"{args.compile_mode}): fp32 with TF32 off, tf32 with TF32 on, fp16/bf16 autocast. eager / new > 1: new is "
        "faster.",
        "",
        *table(rows, torch_ms, args),
        "",
    ]
    errors = [f"- {r['model']} {r['precision']} {r['kernels']}: {r['error']}" for r in rows if "error" in r]
    lines += ["Errors:", *errors, ""] if errors else []
    (out / "conv_kernels.md").write_text("\n".join(lines))
    print("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="folder for conv_kernels.json and conv_kernels.md")
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--precisions", nargs="+", default=list(PRECISIONS), choices=list(PRECISIONS))
    ap.add_argument("--kernels", nargs="+", default=list(KERNELS), choices=list(KERNELS))
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 32, 256])
    ap.add_argument("--compile-batches", nargs="*", type=int, default=[], help="also time torch.compile here")
    ap.add_argument("--compile-mode", default="default", help="torch.compile mode (max-autotune takes minutes)")
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--images", type=int, default=32, help="synthetic images for the correctness check")
    ap.add_argument("--jobs", type=int, default=8, help="projects built at once (make -j2 each)")
    ap.add_argument("--workdir", help="keep the generated projects here (reused when already built)")
    ap.add_argument("--build-only", action="store_true", help="generate and build into --workdir, time nothing")
    args = ap.parse_args()
    if args.build_only:
        if not args.workdir:
            sys.exit("--build-only needs --workdir")
        Path(args.workdir).mkdir(parents=True, exist_ok=True)
        _, projects = build_all(args, Path(args.workdir))
        errors = [f"{k}: {e}" for k, (_, _, e) in projects.items() if e]
        print("\n".join(errors) or f"built {len(projects)} projects in {args.workdir}", flush=True)
        sys.exit(1 if errors else 0)
    if not torch.cuda.is_available():
        sys.exit("conv_kernels.py needs a CUDA GPU")
    t0 = time.time()
    info = dict(device=torch.cuda.get_device_name(0), torch=torch.__version__, cuda=torch.version.cuda,
                date=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), iters=args.iters,
                images=args.images)  # fmt: skip
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(args.workdir or scratch)
        root.mkdir(parents=True, exist_ok=True)
        runs, projects = build_all(args, root)
        info["build_s"] = round(time.time() - t0, 1)
        print(f"generated and built {len(projects)} projects in {info['build_s']} s", flush=True)
        rows = check_and_time(args, runs, projects)
        torch_ms = torch_rows(args, runs)
    info["total_s"] = round(time.time() - t0, 1)
    write(Path(args.out), rows, torch_ms, args, info)
    print(f"total {info['total_s']} s", flush=True)
    failed = [r for r in rows if "error" in r or not r.get("check", {}).get("passed")]
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
