"""Step profile: the CUDA kernels of one training step and where the GPU memory goes, reference recipes, one GPU.

Run on the GPU machine in one go (~2 min on an H200; the CIFAR JPEGs are decoded once into the cache):
  PYTHONPATH=src CONVFORGE_CACHE=.data python3 benchmarks/step_profile.py --out benchmarks/results/step_profile
For each reference recipe (the options of benchmarks/train_speed.py's `convforge` variant: src/convforge/bench/
train.py) and each precision (bf16, fp32; `auto` picks one per model, src/convforge/inference.py):
  kernels        torch.profiler around replays of the captured K-step graph: name, count and GPU us per step;
                 the same for the eager step (Trainer.step(*Trainer.batch(rows)), no graph) as a cross-check
  gpu_us/step    CUDA-event time of K-step replays / K: what the epoch loop pays per step
  memory         allocated MiB: after data load, after Trainer init (x_train, any normalized copy), after the first
                 epoch (graphs captured; graph pool), the peak in the first epoch (warm-up + capture), in a second
                 epoch and in evaluation, and the cuBLAS workspaces; the plain loop's (bench/train.py plain_loop,
                 one epoch) at the same stages.
A precision sweep (simple-cnn on CIFAR, batch 32..2048) times fp32 vs bf16 steps: the crossover behind
BF16_MIN_MACS_PER_STEP. Writes step_profile_<device>.json and .md into --out. `--smoke`: 8x8 digits on the CPU
(checks the script's plumbing; no kernels, no memory).
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from _graph_timing import replay_us

from convforge.bench.train import REFERENCE, SPLIT, _peak_reset, environment, plain_loop
from convforge.data import DataConfig, ImageSet, load_data
from convforge.engine import TrainConfig
from convforge.engine.loop import Trainer, macs_per_image, seed_everything
from convforge.engine.progress import EpochProgress
from convforge.run import Run

CUDA = torch.cuda.is_available()
MIB = 2**20


def mib(nbytes: float) -> float:
    return round(nbytes / MIB, 1)


def allocated() -> float:
    if not CUDA:
        return 0.0
    torch.cuda.synchronize()
    return mib(torch.cuda.memory_allocated())


def peak() -> float:
    return mib(torch.cuda.max_memory_allocated()) if CUDA else 0.0


def reset_peak() -> None:
    if CUDA:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def pool_mib() -> dict[str, float]:
    """Allocated MiB per memory pool: (0, 0) is the default pool, the others belong to CUDA graphs."""
    pools: dict[str, float] = {}
    for seg in torch.cuda.memory_snapshot() if CUDA else []:
        key = str(tuple(seg.get("segment_pool_id", (0, 0))))
        pools[key] = pools.get(key, 0.0) + seg.get("allocated_size", 0) / MIB
    return {k: round(v, 1) for k, v in pools.items()}


def guarded(out: dict[str, Any], key: str, fn: Callable[[], Any]) -> None:
    """out[key] = fn(), or the error: one broken section must not lose the others (GPU time is scarce)."""
    try:
        out[key] = fn()
    except Exception as err:
        out[key] = {"error": f"{type(err).__name__}: {err}", "trace": traceback.format_exc(limit=4)}
        print(f"  {key}: FAILED {type(err).__name__}: {err}")


# -- kernels -------------------------------------------------------------------------------------------
def _device_us(evt) -> float:
    for attr in ("self_device_time_total", "self_cuda_time_total", "device_time_total", "cuda_time_total"):
        if hasattr(evt, attr):
            return float(getattr(evt, attr))
    return 0.0


def kernel_table(fn: Callable[[], None], steps: int) -> dict[str, Any]:
    """GPU kernels (and memcpy/memset) that fn launches, per training step: fn runs `steps` steps."""
    from torch.profiler import ProfilerActivity, profile

    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    rows = [
        {"name": e.key, "count": e.count / steps, "us": round(_device_us(e) / steps, 2)}
        for e in prof.key_averages()
        if e.device_type == torch.autograd.DeviceType.CUDA and _device_us(e) > 0
    ]
    rows.sort(key=lambda r: -r["us"])
    total = {
        "kernels_per_step": round(sum(r["count"] for r in rows), 2),
        "busy_us_per_step": sum(r["us"] for r in rows),
    }
    return {**total, "kernels": rows}


def replay_us_per_step(tr: Trainer, replays: int = 20) -> tuple[float, int]:
    """GPU time per step of the largest captured graph, from CUDA events around back-to-back replays."""
    steps = max(tr.fast.graphs)
    graph, n = tr.fast.graphs[steps], max(1, min(replays, tr.fast.full // steps))
    tr.fast.start_epoch(tr.epoch_order())  # ptr 0: the replays read valid rows
    return replay_us(graph, reps=n, warm=0) / steps, steps


def graph_kernels(tr: Trainer) -> dict[str, Any]:
    steps = max(tr.fast.graphs)
    n = max(1, min(5, tr.fast.full // steps))
    tr.fast.start_epoch(tr.epoch_order())
    return kernel_table(lambda: [tr.fast.graphs[steps].replay() for _ in range(n)], n * steps)


def eager_kernels(tr: Trainer, steps: int = 10) -> dict[str, Any]:
    rows = tr.epoch_order()[: steps * tr.cfg.batch_size].view(steps, -1)
    tr.step(*tr.batch(rows[0]))  # warm: cuDNN plans, autocast caches
    return kernel_table(lambda: [tr.step(*tr.batch(r)) for r in rows], steps)


# -- one recipe on the engine ---------------------------------------------------------------------------
def make_trainer(name: str, source: str, splits, precision: str, device: str, data_dir: str | None, **over):
    ref = REFERENCE[name]
    options = {k: v for k, v in ref.items() if k != "source"}
    options.update(split=SPLIT[ref["source"]], schedule="constant", rescale="unit")  # as bench_recipe
    options.update(over)
    out = tempfile.mkdtemp(prefix="step_profile_")
    cfg = TrainConfig(source=source, data_dir=data_dir, device=device, precision=precision, out=out, **options)
    seed_everything(cfg.seed, cfg.deterministic)
    return Trainer(cfg, Run(Path(out)), splits, log=lambda s: None)


def timed_epoch(tr: Trainer) -> tuple[float, dict[str, float]]:
    with EpochProgress(1, tr.steps_per_epoch, live=False, log=lambda s: None) as progress:
        if CUDA:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        progress.start_epoch(1)
        metrics = tr.train_epoch(progress)  # one host sync at its end
        return time.perf_counter() - t0, metrics


def engine_profile(name: str, source: str, splits, precision: str, device: str, data_dir: str | None) -> dict:
    out: dict[str, Any] = {}
    _peak_reset()
    mem: dict[str, Any] = {"before_init_mib": allocated()}
    tr = make_trainer(name, source, splits, precision, device, data_dir)
    x_norm = getattr(tr.fast, "x_norm", None)  # the normalized copy of older versions, if any
    mem.update(
        after_init_mib=allocated(),
        init_peak_mib=peak(),
        x_train_mib=mib(tr.x_train.numel() * tr.x_train.element_size()),
        x_norm_mib=mib(x_norm.numel() * x_norm.element_size()) if x_norm is not None else 0.0,
        x_train_channels_last=tr.x_train.is_contiguous(memory_format=torch.channels_last),
    )
    out.update(precision=tr.precision, macs_per_step=macs_per_image(tr.spec.layers) * tr.cfg.batch_size)
    reset_peak()
    t1, m1 = timed_epoch(tr)
    mem.update(epoch1_peak_mib=peak(), after_epoch1_mib=allocated(), pools_mib=pool_mib())
    reset_peak()
    t2, m2 = timed_epoch(tr)
    mem.update(epoch2_peak_mib=peak())
    reset_peak()
    acc = tr.measure(splits.test)["acc"] if len(splits.test.labels) else None
    mem.update(eval_peak_mib=peak())
    out.update(epoch1_s=round(t1, 3), epoch2_s=round(t2, 3), train_acc=m2["train_acc"], test_acc_after_2=acc)
    out.update(steps_per_epoch=tr.steps_per_epoch, host_us_per_step_epoch2=round(t2 * 1e6 / tr.steps_per_epoch, 1))
    step_kernels(tr, out)
    del tr
    gc.collect()
    mem["after_del_mib"] = allocated()
    getattr(torch._C, "_cuda_clearCublasWorkspaces", lambda: None)()
    mem["cublas_workspaces_mib"] = round(mem["after_del_mib"] - allocated(), 1)
    out["memory"] = mem
    return out


def step_kernels(tr: Trainer, out: dict[str, Any]) -> None:
    """GPU time per replayed step, and the kernel lists of the replayed and of the eager step."""
    if tr.fast is not None:
        out.update(graphs=sorted(tr.fast.graphs), k=tr.fast.k)
        guarded(out, "gpu_us_per_step", lambda: round(replay_us_per_step(tr)[0], 1))
        guarded(out, "graph", lambda: graph_kernels(tr))
    if CUDA:
        guarded(out, "eager", lambda: eager_kernels(tr))


def plain_memory(name: str, splits, device: str) -> dict[str, Any]:
    """The plain loop for one epoch: its memory at the same stages (its peak is the budget's reference)."""
    probe: dict[str, Any] = {}
    _peak_reset()
    probe["before_init_mib"] = allocated()
    r = plain_loop(REFERENCE[name], splits, seed=0, device=device, epochs=1, probe=probe)
    probe.update(epoch_s=round(r["train_s"], 3), test_acc_after_1=r["acc"])
    return probe


def sweep(name: str, source: str, splits, device: str, data_dir: str | None, batches: list[int]) -> list[dict]:
    """GPU us per step of one model in fp32 and bf16 over batch sizes: where bf16 starts to pay."""
    rows = []
    for bs in batches:
        n = min(len(splits.train.labels), 16 * bs)
        train = ImageSet(splits.train.images[:n], splits.train.labels[:n], splits.train.classes)
        sub = dataclasses.replace(splits, train=train)
        row: dict[str, Any] = {"batch": bs}
        for precision in ("fp32", "bf16"):
            tr = make_trainer(name, source, sub, precision, device, data_dir, batch_size=bs, epochs=1)
            row["macs_per_step"] = macs_per_image(tr.spec.layers) * bs
            timed_epoch(tr)  # warm-up and capture
            if tr.fast is not None:
                us, steps = replay_us_per_step(tr)
                row[f"{precision}_us_per_step"], row[f"{precision}_k"] = round(us, 1), steps
            del tr
            gc.collect()
        rows.append(row)
        print(f"  sweep {row}")
    return rows


# -- report --------------------------------------------------------------------------------------------
def markdown(results: dict[str, Any], top: int = 25) -> str:
    env = results["environment"]
    lines = [f"# step_profile: {env['device']}, torch {env['torch']}, CUDA {env['cuda']}, {env['date']}", ""]
    lines += [f"Wall time {results.get('wall_s', 0):.0f} s. TF32: {results.get('tf32')}", ""]
    for name, res in results["recipes"].items():
        lines += [f"## {name}", "", "| stage (MiB allocated) | plain | " + " | ".join(res["precisions"]) + " |"]
        lines.append("|---" * (2 + len(res["precisions"])) + "|")
        engines = [res.get(p) or {} for p in res["precisions"]]
        plain = res.get("plain") or {}
        stages = [k for k in (engines[0].get("memory") or {}) if k.endswith("_mib") and k != "pools_mib"]
        for k in dict.fromkeys([*plain, *stages]):
            if k.endswith("_mib"):
                vals = [str((e.get("memory") or {}).get(k, "")) for e in engines]
                lines.append(f"| {k} | {plain.get(k, '')} | " + " | ".join(vals) + " |")
        lines.append("")
        for p, e in zip(res["precisions"], engines):
            lines += engine_lines(p, e, top)
    if results.get("sweep"):
        lines += [
            "## precision sweep (simple-cnn, CIFAR): GPU us per step",
            "",
            "| batch | M MACs/step | fp32 | bf16 |",
        ]
        lines.append("|---|---|---|---|")
        for r in results["sweep"] if isinstance(results["sweep"], list) else []:
            lines.append(f"| {r['batch']} | {r['macs_per_step'] / 1e6:.0f} | {r.get('fp32_us_per_step')} "
                         f"| {r.get('bf16_us_per_step')} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def engine_lines(precision: str, e: dict[str, Any], top: int) -> list[str]:
    if "error" in e:
        return [f"### {precision}: FAILED {e['error']}", ""]
    head = (f"### {precision} (resolved {e.get('precision')}): {e.get('gpu_us_per_step')} GPU us/step (replay), "
            f"K {e.get('k')}, graphs {e.get('graphs')}, epoch 1 {e.get('epoch1_s')} s, epoch 2 {e.get('epoch2_s')} s "
            f"({e.get('host_us_per_step_epoch2')} us/step), {e.get('macs_per_step', 0) / 1e6:.1f} M MACs/step, "
            f"pools {(e.get('memory') or {}).get('pools_mib')}")  # fmt: skip
    lines = [head, ""]
    for kind in ("graph", "eager"):
        t = e.get(kind) or {}
        if "kernels" not in t:
            lines += [f"{kind}: {t.get('error', 'not run')}", ""]
            continue
        lines += [f"{kind}: {t['kernels_per_step']} kernels/step, {t['busy_us_per_step']:.1f} us busy/step", ""]
        lines += ["| kernel | per step | us/step |", "|---|---|---|"]
        lines += [f"| {r['name'][:90]} | {r['count']:.2f} | {r['us']:.2f} |" for r in t["kernels"][:top]]
        lines.append("")
    return lines


# -- main ----------------------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="benchmarks/results/step_profile")
    ap.add_argument("--data-dir", default=os.environ.get("CONVFORGE_CACHE", ".data"))
    ap.add_argument("--mnist", default="mnist")
    ap.add_argument("--fashion", default="fashion-mnist")
    ap.add_argument("--cifar", default="cifar10", help="the cifar10 built-in finds .data/cifar10-jpg-train.tar.gz")
    ap.add_argument("--recipes", default="mnist-digits-cnn,fashion-mlp,cifar-simple-cnn")
    ap.add_argument("--precisions", default="bf16,fp32")
    ap.add_argument("--sweep", default="32,256,1024,2048", help="simple-cnn batch sizes ('' = no sweep)")
    ap.add_argument("--smoke", action="store_true", help="8x8 digits on the CPU: checks the plumbing only")
    a = ap.parse_args()
    device = "cpu" if a.smoke else "cuda"
    sources = {"mnist-digits-cnn": a.mnist, "fashion-mlp": a.fashion, "cifar-simple-cnn": a.cifar}
    if a.smoke:
        sources = dict.fromkeys(sources, "digits")
    run(a, sources, device)


def run(a, sources: dict[str, str], device: str) -> None:
    t0 = time.perf_counter()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    tf32 = {"cudnn": torch.backends.cudnn.allow_tf32, "matmul": torch.backends.cuda.matmul.allow_tf32}
    results: dict[str, Any] = {"environment": environment(), "tf32": tf32, "recipes": {}}
    stem = out / f"step_profile_{results['environment']['device'].replace(' ', '-')}"
    precisions = a.precisions.split(",")
    splits_by_name = {}
    for name in a.recipes.split(","):
        source = sources[name]
        print(f"{name}: {source}")
        ref = REFERENCE[name]
        _peak_reset()
        split = (0.8, 0.0, 0.2) if a.smoke else SPLIT[ref["source"]]  # digits has no test set of its own
        cfg = DataConfig(source=source, split=split, data_dir=a.data_dir)
        splits = splits_by_name[name] = load_data(cfg, progress=False)
        res: dict[str, Any] = {"source": source, "precisions": precisions, "after_data_load_mib": allocated()}
        guarded(res, "plain", lambda n=name, s=splits: plain_memory(n, s, device))
        for p in precisions:
            job = lambda p=p, n=name, src=source, s=splits: engine_profile(n, src, s, p, device, a.data_dir)  # noqa: E731
            guarded(res, p, job)
            print(f"  {p}: {json.dumps({k: v for k, v in res[p].items() if k not in ('graph', 'eager')})[:600]}")
        results["recipes"][name] = res
        write(results, stem, t0)
    if a.sweep and "cifar-simple-cnn" in splits_by_name:
        batches = [int(b) for b in a.sweep.split(",")]
        name = "cifar-simple-cnn"
        guarded(results, "sweep", lambda: sweep(name, sources[name], splits_by_name[name], device, a.data_dir, batches))
    write(results, stem, t0)
    print(markdown(results))


def write(results: dict[str, Any], stem: Path, t0: float) -> None:
    results["wall_s"] = round(time.perf_counter() - t0, 1)
    Path(f"{stem}.json").write_text(json.dumps(results, indent=1, default=str))
    Path(f"{stem}.md").write_text(markdown(results))


if __name__ == "__main__":
    main()
