"""Per-layer time of every conv_nhwc.cuh tile (and cuDNN) on resnet18 / alexnet, fp16, 224 px, one GPU call.

    PYTHONPATH=src python3 benchmarks/nhwc_tiles.py --out DIR [--models resnet18 alexnet] [--tiles auto cudnn
        64x256x32 ...] [--batches 256 32 1] [--iters 20] [--images 32] [--jobs N] [--workdir W [--build-only]]

One generated project per (model, tile): `auto` is today's choose_tiles; `BMxBNxBK[wW]` is that tile forced on every
8-channel-aligned conv/dense launch (CF_NHWC_TILE at generation, nhwc.py; the 4-channel stem keeps its own tile);
`cudnn` is --backend cudnn (its convolutions through cuDNN, for reference); `wgmma` / `wgmma-<tile>` (not in the
default list) are conv_wgmma.cuh on those layers (CF_NHWC_WGMMA=1 or that tile; an sm_90a build). Random seeded
weights. Projects are generated one at a time (the environment variables are process-wide) and built in threads;
each one is checked and timed on the GPU as soon as it is built, while the others still compile.
Per project, one `classify --bench-layers 256,32,1` process: per batch, the whole pass as --bench times it (CUDA
graph replay, median of --iters) and the median ms of each launch (eager, CUDA events between launches, all queued
behind a 5 ms spin kernel so that no launch waits for the host, even one busy compiling the other projects; the
events add about a microsecond per launch). Check: the probabilities of --images synthetic images against the Run's
PyTorch model (verify.py's fp16 tolerances).
Prints and writes DIR/nhwc_tiles.json and DIR/nhwc_tiles.md: per model and batch, one line per conv/dense layer
(shape, GFLOP, ms and TFLOP/s per tile, the fastest native tile, the tile `auto` runs), then the other launches and
the whole pass per tile. Budget: under 4 minutes on an H200 with 16 cores (not measured yet: 30 builds of about 20 s
of one core each there (build_s of conv_kernels.py), then about 4 s of GPU per project).
--build-only (CPU, no GPU) fills --workdir so that a later run only checks and times.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from convforge._io import read_yaml  # noqa: E402
from convforge.cudagen import generate  # noqa: E402
from convforge.cudagen._random_run import make_run  # noqa: E402
from convforge.cudagen.build import build_project  # noqa: E402
from convforge.cudagen.nhwc import TILE_ENV, TILES, WGMMA_ENV, WGMMA_TILES, tile_name  # noqa: E402
from convforge.cudagen.plan import make_plan  # noqa: E402
from convforge.cudagen.verify import compare, reference_probs, run_program, synthetic_images  # noqa: E402
from convforge.run import Run  # noqa: E402

IN_SHAPE, CLASSES = (3, 224, 224), 10
MODELS = ("resnet18", "alexnet")
TILE_NAMES = [tile_name(t) for t in TILES]
VARIANTS = ("auto", "cudnn", *TILE_NAMES)
WGMMA_VARIANTS = ("wgmma", *(f"wgmma-{name}" for name in WGMMA_TILES))  # only when asked for: not checked on a GPU yet
_ENV_LOCK = threading.Lock()  # CF_NHWC_TILE / CF_NHWC_WGMMA are read from os.environ during generation


def variant_env(variant: str) -> dict[str, str]:
    """The generation-time variables of one variant (auto and cudnn: none)."""
    if variant in ("auto", "cudnn"):
        return {}
    if variant.startswith("wgmma"):
        return {WGMMA_ENV: variant.removeprefix("wgmma-") if "-" in variant else "1"}
    return {TILE_ENV: variant}


@contextlib.contextmanager
def forced(env: dict[str, str]):
    old = {key: os.environ.pop(key, None) for key in (TILE_ENV, WGMMA_ENV)}
    os.environ.update(env)
    try:
        yield
    finally:
        for key, value in old.items():
            os.environ.pop(key, None)
            if value is not None:
                os.environ[key] = value


def open_runs(models, root: Path) -> dict:
    runs = {}
    for m in models:
        path = root / f"run-{m}"
        done = (path / "model.safetensors").is_file()  # a --workdir of an earlier (--build-only) run
        runs[m] = Run.open(path) if done else make_run(path, m, in_shape=IN_SHAPE, num_classes=CLASSES)
    return runs


def generate_one(run, out: Path, variant: str, max_batch: int) -> None:
    """Write one project: variant auto, cudnn or a tile."""
    backend = "cudnn" if variant == "cudnn" else "native"
    with _ENV_LOCK, forced(variant_env(variant)):
        generate(run, out, backend=backend, precision="fp16", max_batch=max_batch)


def layer_plan(run):
    """The Run's layer list as codegen sees it (names and shapes for the GFLOP column)."""
    pre = run.preprocessing
    spec = read_yaml(run.file("spec.yaml"))
    return make_plan(spec, run.state_dict(), (pre["channels"], pre["height"], pre["width"]), run.output)


def layer_gflop(plan, batch: int) -> dict[str, float]:
    """Op name -> GFLOP (2 x MACs) of each conv / dense op at this batch size."""
    flops = {}
    for op in plan.ops:
        p = op.p
        if op.kind != "conv":
            continue
        macs = p["cout"] * p["cin"] if p["dense"] else p["cout"] * p["cin"] // p["groups"] * p["kh"] * p["kw"]
        flops[op.name] = 2 * macs * (1 if p["dense"] else p["ho"] * p["wo"]) * batch / 1e9
    return flops


def bench_layers(out: Path, batches, iters: int) -> list[dict]:
    cmd = [str(out / "classify"), "--weights", str(out), "--bench-layers", ",".join(map(str, batches))]
    proc = subprocess.run([*cmd, "--iters", str(iters)], capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(f"--bench-layers failed: {(proc.stderr or proc.stdout).strip()[:300]}")
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def measure(args, runs: dict, refs: dict, key, out: Path) -> dict:
    """Check one built project against PyTorch, then time it per layer (the GPU part; one project at a time)."""
    model, variant = key
    row = dict(model=model, variant=variant)
    try:
        if refs.get(model) is not None:
            row["check"] = compare(run_program(out, refs[model][0]), refs[model][1], "fp16")
        row["timing"] = bench_layers(out, args.batches, args.iters)
    except Exception as e:  # noqa: BLE001  (reported in the table, the other projects still run)
        row["error"] = f"{type(e).__name__}: {e}"
    return row


def build_and_measure(args, root: Path, gpu: bool) -> tuple[list[dict], dict]:
    """Generate every project, build them in threads, and check/time each on the GPU as its build finishes."""
    runs = open_runs(args.models, root)
    refs = {}
    if gpu and args.images:
        images = synthetic_images(IN_SHAPE, args.images, seed=1)
        refs = {m: (images, reference_probs(runs[m], images)) for m in args.models}
    keys = [(m, v) for m in args.models for v in args.tiles]
    plans, rows = {m: layer_plan(runs[m]) for m in args.models}, []

    def build(key):
        out, t0 = root / f"{key[0]}-{key[1]}", time.time()
        if not (out / "classify").is_file():  # else built by an earlier run into this --workdir
            generate_one(runs[key[0]], out, key[1], max(args.batches))
            build_project(out, jobs=2)
        return out, round(time.time() - t0, 1)

    with ThreadPoolExecutor(args.jobs) as pool:
        futures = {pool.submit(build, k): k for k in keys}
        for fut in as_completed(futures):
            key = futures[fut]
            try:
                out, build_s = fut.result()
            except Exception as e:  # noqa: BLE001
                rows.append(dict(model=key[0], variant=key[1], error=f"build: {type(e).__name__}: {e}"))
                print(f"{key[0]} {key[1]}: BUILD ERROR {e}", flush=True)
                continue
            row = measure(args, runs, refs, key, out) if gpu else dict(model=key[0], variant=key[1])
            rows.append(dict(row, build_s=build_s))
            print(_progress(rows[-1]), flush=True)
    return rows, plans


def _progress(row: dict) -> str:
    head = f"{row['model']} {row['variant']} (built in {row.get('build_s', '-')} s)"
    if "error" in row:
        return f"{head}: ERROR {row['error'][:300]}"
    check = row.get("check")
    ok = f"max|diff| {check['max_abs_diff']:.1e} {'ok' if check['passed'] else 'FAIL'}; " if check else ""
    ms = " ".join(f"b{t['batch']}={t['graph_ms']:.3f}ms" for t in row.get("timing", []))
    return f"{head}: {ok}{ms}"


def _tile_at(desc: str, batch: int) -> str:
    """The tile a `BMxBNxBK@min_n ...` description (network.cu's layer table) runs at this batch."""
    for part in desc.split():
        tile, _, min_n = part.partition("@")
        if not min_n or batch >= int(min_n):
            return tile
    return desc


def tables(rows: list[dict], plans: dict, args) -> list[str]:
    lines = []
    for model in args.models:
        got = {r["variant"]: r for r in rows if r["model"] == model and "timing" in r}
        variants = [v for v in args.tiles if v in got]
        for batch in args.batches if variants else []:
            lines += ["", f"## {model}, batch {batch}", "", *_batch_table(got, variants, plans[model], batch)]
    return lines


def _batch_table(got: dict, variants: list[str], plan, batch: int) -> list[str]:
    per = {v: next(t for t in got[v]["timing"] if t["batch"] == batch) for v in variants}
    layers = {v: {x["name"]: x for x in per[v]["layers"]} for v in variants}
    gflop = layer_gflop(plan, batch)
    native = [v for v in variants if v != "cudnn"]
    head = ["layer", "shape", "GFLOP", *(f"{v} ms (TFLOP/s)" for v in variants), "fastest native", "auto picks"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    base = layers[variants[0]]
    other = dict.fromkeys(variants, 0.0)
    for name, info in base.items():
        if name not in gflop:
            for v in variants:
                other[v] += layers[v].get(name, {}).get("ms", 0.0)
            continue
        ms = {v: layers[v][name]["ms"] for v in variants if name in layers[v]}
        cells = [name, info["shape"], f"{gflop[name]:.3g}"]
        cells += [f"{ms[v]:.3f} ({gflop[name] / ms[v]:.0f})" if ms.get(v) else "-" for v in variants]
        auto = layers.get("auto", {}).get(name, {}).get("tile", "")
        auto = _tile_at(auto, batch) if auto else "-"
        fastest = min((v for v in native if ms.get(v)), key=lambda v: ms[v], default="-")
        lines.append("| " + " | ".join([*cells, f"auto ({auto})" if fastest == "auto" else fastest, auto]) + " |")
    lines.append("| other launches | | | " + " | ".join(f"{other[v]:.3f}" for v in variants) + " | | |")
    sums = {v: sum(x["ms"] for x in per[v]["layers"]) for v in variants}
    lines.append("| sum of launches | | | " + " | ".join(f"{sums[v]:.3f}" for v in variants) + " | | |")
    lines.append("| whole pass (graph) | | | " + " | ".join(f"{per[v]['graph_ms']:.3f}" for v in variants) + " | | |")
    return lines


def write(out: Path, rows: list[dict], plans: dict, args, info: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "nhwc_tiles.json").write_text(json.dumps(dict(info=info, rows=rows), indent=2) + "\n")
    lines = [
        f"# conv_nhwc.cuh tiles per layer ({info['device']}, fp16, 224 px, {info['date']})",
        "",
        "Median ms per launch (`classify --bench-layers`: eager launches queued behind a spin kernel, CUDA events "
        f"between them, {args.iters} passes) and TFLOP/s (2 x MACs of the real channels); whole pass: CUDA graph "
        "replay. auto: choose_tiles today; BMxBNxBK: CF_NHWC_TILE forced on every 8-channel-aligned conv/dense layer "
        "(the 4-channel stem keeps its own); cudnn: --backend cudnn. fastest native: the quickest non-cuDNN column; "
        "auto picks: the tile choose_tiles runs at this batch.",
        *tables(rows, plans, args),
        "",
        "Checks (fp16 tolerances of cudagen/verify.py, synthetic images vs PyTorch fp32):",
        *(f"- {_progress(r)}" for r in sorted(rows, key=lambda r: (r["model"], r["variant"]))),
        "",
    ]
    (out / "nhwc_tiles.md").write_text("\n".join(lines))
    print("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="folder for nhwc_tiles.json and nhwc_tiles.md")
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--tiles", nargs="+", default=list(VARIANTS), choices=[*VARIANTS, *WGMMA_VARIANTS])
    ap.add_argument("--batches", nargs="+", type=int, default=[256, 32, 1])
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--images", type=int, default=32, help="synthetic images for the check (0: no check)")
    ap.add_argument(
        "--jobs", type=int, default=os.cpu_count() or 4, help="builds at once (make -j2; nvcc of network.cu dominates)"
    )
    ap.add_argument("--workdir", help="keep the generated projects here (reused when already built)")
    ap.add_argument("--build-only", action="store_true", help="generate and build into --workdir, time nothing")
    args = ap.parse_args()
    if args.build_only and not args.workdir:
        sys.exit("--build-only needs --workdir")
    import torch

    gpu = not args.build_only
    if gpu and not torch.cuda.is_available():
        sys.exit("nhwc_tiles.py needs a CUDA GPU (or --build-only)")
    t0 = time.time()
    info = dict(device=torch.cuda.get_device_name(0) if gpu else "build only", iters=args.iters,
                date=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))  # fmt: skip
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(args.workdir or scratch)
        root.mkdir(parents=True, exist_ok=True)
        rows, plans = build_and_measure(args, root, gpu)
    info["total_s"] = round(time.time() - t0, 1)
    if gpu:
        write(Path(args.out), rows, plans, args, info)
    print(f"total {info['total_s']} s", flush=True)
    failed = [r for r in rows if "error" in r or not r.get("check", {"passed": True})["passed"]]
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
