"""Step variants: GPU time of one captured training step of each reference recipe's model, per implementation choice.

What engine/loop.py's Trainer.step runs (autocast forward, cross-entropy, zero_grad, backward, the fused solver),
captured in a CUDA graph on random data of the recipe's batch shape, for each combination of
  precision    bf16 / fp16 autocast, fp32 (TF32 convolutions, as the engine sets)
  layout       channels_last (the engine's training layout on CUDA) / contiguous NCHW
  autotune     cudnn.benchmark off (the engine's default) / on
  conv         cuDNN / im2col (F.unfold + matmul: cuBLAS GEMMs instead of cuDNN's small-problem kernels)
Reported per variant: us per replayed step (CUDA events over --reps replays), kernels per step and their busy us
(torch.profiler). Run on the GPU machine:
  PYTHONPATH=src python3 benchmarks/step_variants.py --out benchmarks/results/step_variants
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from convforge.bench.train import REFERENCE, environment
from convforge.engine.solvers import make_optimizer
from convforge.models import build_model, resolve_spec

SHAPES = {"mnist": (1, 28, 28), "fashion-mnist": (1, 28, 28), "cifar": (3, 32, 32)}
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}


def im2col_forward(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    n, _, h, w = x.shape
    kh, kw = conv.kernel_size
    ph, pw = (kh // 2, kw // 2) if conv.padding == "same" else conv.padding
    sh, sw = conv.stride
    cols = F.unfold(x, (kh, kw), padding=(ph, pw), stride=(sh, sw))  # N x C*kh*kw x L
    out = conv.weight.flatten(1).to(cols.dtype) @ cols  # N x O x L
    ho, wo = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    out = out.view(n, conv.out_channels, ho, wo)
    return out if conv.bias is None else out + conv.bias.to(out.dtype).view(1, -1, 1, 1)


def build(recipe: dict, conv: str) -> nn.Module:
    shape = SHAPES[recipe["source"]]
    model = build_model(resolve_spec(recipe["model"], in_shape=shape, num_classes=10))
    if conv == "im2col":
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                m.forward = (lambda mod: lambda x: im2col_forward(mod, x))(m)
    return model


def measure(name: str, precision: str, layout: str, autotune: bool, conv: str, reps: int) -> dict:
    recipe = REFERENCE[name]
    torch.backends.cudnn.benchmark = autotune
    torch.backends.cudnn.allow_tf32 = True
    torch.manual_seed(0)
    model = build(recipe, conv).cuda()
    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    model = model.to(memory_format=fmt)
    opt = make_optimizer(recipe["solver"], model.parameters(), recipe.get("lr"), fused=True, capturable=True)
    bs, shape = recipe["batch_size"], SHAPES[recipe["source"]]
    x = torch.randn(bs, *shape, device="cuda").contiguous(memory_format=fmt)
    y = torch.randint(0, 10, (bs,), device="cuda")
    dtype = DTYPES[precision]

    def step() -> None:
        with torch.autocast("cuda", dtype=dtype or torch.float32, enabled=dtype is not None):
            logits = model(x)
        loss = F.cross_entropy(logits.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, stream=side):
        step()
    for _ in range(20):
        graph.replay()
    times = []
    for _ in range(5):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(reps):
            graph.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1000 / reps)
    kernels, busy = profile(graph, 20)
    return dict(us_per_step=round(statistics.median(times), 1), kernels=kernels, busy_us=busy)


def profile(graph: torch.cuda.CUDAGraph, replays: int) -> tuple[float, float]:
    from torch.profiler import ProfilerActivity, profile

    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(replays):
            graph.replay()
        torch.cuda.synchronize()
    events = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    busy = sum(e.device_time for e in events) / replays  # us
    return round(len(events) / replays, 1), round(busy, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipes", default=",".join(REFERENCE))
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--out", default="benchmarks/results/step_variants")
    args = ap.parse_args()
    env = environment()
    rows = []
    for name in args.recipes.split(","):
        convs = ["cudnn", "im2col"] if REFERENCE[name]["model"] != "mlp" else ["cudnn"]
        for precision, layout, autotune, conv in itertools.product(
            DTYPES, ["channels_last", "nchw"], [False, True], convs
        ):
            key = dict(recipe=name, precision=precision, layout=layout, autotune=autotune, conv=conv)
            try:
                key.update(measure(name, precision, layout, autotune, conv, args.reps))
            except Exception as err:  # noqa: BLE001  (one failing variant must not lose the others)
                key["error"] = f"{type(err).__name__}: {err}"[:200]
            print(json.dumps(key), flush=True)
            rows.append(key)
    out = Path(f"{args.out}_{env['device'].replace(' ', '-')}_{env['date'][:10]}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(dict(env=env, rows=rows), indent=1))
    lines = [
        f"# step_variants: {env['device']}, torch {env['torch']}, {env['date']}",
        "",
        "| recipe | precision | layout | cudnn.benchmark | conv | us/step | kernels/step | busy us/step |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        cells = [r["recipe"], r["precision"], r["layout"], "on" if r["autotune"] else "off", r["conv"]]
        cells += [str(r.get(k, r.get("error", ""))) for k in ("us_per_step", "kernels", "busy_us")]
        lines.append("| " + " | ".join(cells) + " |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
