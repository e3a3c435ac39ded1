"""Step variants: GPU time of one captured training step of each reference recipe's model, per implementation choice.

What engine/loop.py's Trainer.step runs (autocast forward, cross-entropy, zero_grad, backward, the fused solver),
captured in a CUDA graph on random data of the recipe's batch shape, for each combination of
  precision    bf16 / fp16 autocast, fp32 (TF32 convolutions, as the engine sets); bf16-weights / fp16-weights:
               no autocast, the model's weights in that type and its batchnorms in fp32 (airbench's fp16 model)
  compile      eager modules / torch.compile(model) (default mode; the step is still captured in a CUDA graph)
  norm-act     batchnorm + ReLU/GELU pairs as one Triton op (models/_norm_act.py, the default) / PyTorch's modules
  layout       channels_last (the engine's training layout on CUDA) / contiguous NCHW
  autotune     cudnn.benchmark off (the engine's default) / on
  conv         cuDNN / im2col (F.unfold + matmul: cuBLAS GEMMs instead of cuDNN's small-problem kernels) / triton
               (convforge's small-channel conv and small dense kernels, models/_small_conv.py, _small_dense.py: the
               default under autocast; the other two variants run dense layers on cuBLAS)
Besides the reference recipes, `cifar10-fast` (the fast recipe's network and solver at batch 1024, its whitening conv
frozen). Reported per variant: us per replayed step (CUDA events over --reps replays), kernels per step, their busy
us and busy us per kernel family (torch.profiler). Run on the GPU machine:
  PYTHONPATH=src python3 benchmarks/step_variants.py --out benchmarks/results/step_variants
  PYTHONPATH=src python3 benchmarks/step_variants.py --recipes cifar10-fast --precisions bf16,fp16-weights \
      --layouts channels_last --convs cudnn --compile off,on
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
from pathlib import Path

import torch
import torch.nn.functional as F
from _graph_timing import captured, kernel_times, replay_us
from _results import save
from torch import nn

from convforge.bench.train import REFERENCE, environment
from convforge.engine.solvers import make_optimizer
from convforge.models import _norm_act, _small_conv, _small_dense, build_model, resolve_spec

SHAPES = {"mnist": (1, 28, 28), "fashion-mnist": (1, 28, 28), "cifar": (3, 32, 32)}
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}
WEIGHT_DTYPES = {"bf16-weights": torch.bfloat16, "fp16-weights": torch.float16}
CASES = {
    **REFERENCE,
    "cifar10-fast": dict(source="cifar", model="cifar10-fast", solver="nesterov", lr=1.5, batch_size=1024),
}
FAMILIES = (  # kernel-name fragments -> family, first match wins
    ("conv_forward", "small-conv"),
    ("wgrad_partial", "small-conv"),
    ("wgrad_finish", "small-conv"),
    ("dense_", "small-dense"),
    ("stats_partial", "norm-act"),
    ("stats_finish", "norm-act"),
    ("apply_forward", "norm-act"),
    ("grad_partial", "norm-act"),
    ("grad_apply", "norm-act"),
    ("batch_norm", "batchnorm"),
    ("pool", "pool"),
    ("multi_tensor", "solver"),
    ("copy", "copy/cast"),
    ("gemm", "conv/gemm"),
    ("conv", "conv/gemm"),
    ("xmma", "conv/gemm"),
    ("nvjet", "conv/gemm"),
    ("cutlass", "conv/gemm"),
    ("Memset", "memset"),
    ("reduce", "reduce"),
    ("elementwise", "elementwise"),
)


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
    if recipe["model"] == "cifar10-fast":  # its whitening conv is frozen (recipes/_tricks.py): no weight gradient
        next(m for m in model.modules() if isinstance(m, nn.Conv2d)).weight.requires_grad_(False)
    if conv == "im2col":
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                m.forward = (lambda mod: lambda x: im2col_forward(mod, x))(m)
    return model


def measure(
    name: str,
    precision: str,
    layout: str,
    autotune: bool,
    conv: str,
    reps: int,
    compiled: bool = False,
    norm_act: bool = True,
) -> dict:
    recipe = CASES[name]
    _norm_act.ENABLED = norm_act
    _small_conv.ENABLED = _small_dense.ENABLED = conv == "triton"
    torch.backends.cudnn.benchmark = autotune
    torch.backends.cudnn.allow_tf32 = True
    torch.manual_seed(0)
    model = build(recipe, conv).cuda()
    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    model = model.to(memory_format=fmt)
    weights = WEIGHT_DTYPES.get(precision)
    if weights is not None:
        model.to(weights)
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.float()
    opt = make_optimizer(recipe["solver"], model.parameters(), recipe.get("lr"), fused=True, capturable=True)
    bs, shape = recipe["batch_size"], SHAPES[recipe["source"]]
    x = torch.randn(bs, *shape, device="cuda", dtype=weights).contiguous(memory_format=fmt)
    y = torch.randint(0, 10, (bs,), device="cuda")
    dtype = DTYPES.get(precision)
    forward = torch.compile(model) if compiled else model

    def step() -> None:
        with torch.autocast("cuda", dtype=dtype or torch.float32, enabled=dtype is not None):
            logits = forward(x)
        loss = F.cross_entropy(logits.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    graph = captured(step)
    times = [replay_us(graph, reps, warm=20 if i == 0 else 0) for i in range(5)]
    kernels, busy, families, top = profile(graph, 20)
    us = round(statistics.median(times), 1)
    return dict(us_per_step=us, kernels=kernels, busy_us=busy, families=families, top_kernels=top)


def family(kernel: str) -> str:
    return next((fam for part, fam in FAMILIES if part.lower() in kernel.lower()), "other")


def profile(graph: torch.cuda.CUDAGraph, replays: int) -> tuple[float, float, dict[str, float], dict[str, float]]:
    """Kernels per step, their busy us, busy us per family and the 30 largest kernels (names cut at 90)."""
    count, times = kernel_times(graph, replays)
    families: dict[str, float] = {}
    for name, us in times.items():
        families[family(name)] = families.get(family(name), 0.0) + us
    families = {k: round(v, 1) for k, v in sorted(families.items(), key=lambda kv: -kv[1])}
    top = {name[:90]: round(us, 1) for name, us in list(times.items())[:30]}
    return round(count, 1), round(sum(times.values()), 1), families, top


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipes", default=",".join(REFERENCE), help=f"of {', '.join(CASES)}")
    ap.add_argument("--precisions", default=",".join(DTYPES), help=f"of {', '.join([*DTYPES, *WEIGHT_DTYPES])}")
    ap.add_argument("--layouts", default="channels_last,nchw")
    ap.add_argument("--autotune", default="off,on")
    ap.add_argument("--convs", default="cudnn,im2col")
    ap.add_argument("--compile", default="off")
    ap.add_argument("--norm-act", default="on")
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--out", default="benchmarks/results/step_variants")
    args = ap.parse_args()
    env = environment()
    rows = []
    for name in args.recipes.split(","):
        convs = args.convs.split(",")
        convs = convs if CASES[name]["model"] != "mlp" else [c for c in convs if c != "im2col"]
        on = {"off": False, "on": True}
        for precision, layout, autotune, conv, compiled, fused in itertools.product(
            args.precisions.split(","),
            args.layouts.split(","),
            [on[a] for a in args.autotune.split(",")],
            convs,
            [on[c] for c in args.compile.split(",")],
            [on[f] for f in args.norm_act.split(",")],
        ):
            key = dict(recipe=name, precision=precision, layout=layout, autotune=autotune, conv=conv, compile=compiled)
            key["norm_act"] = fused
            try:
                key.update(measure(name, precision, layout, autotune, conv, args.reps, compiled, fused))
            except Exception as err:  # noqa: BLE001  (one failing variant must not lose the others)
                key["error"] = f"{type(err).__name__}: {err}"[:200]
            print(json.dumps(key), flush=True)
            rows.append(key)
    out = Path(f"{args.out}_{env['device'].replace(' ', '-')}_{env['date'][:10]}")
    lines = [
        f"# step_variants: {env['device']}, torch {env['torch']}, {env['date']}",
        "",
        "| recipe | precision | layout | cudnn.benchmark | conv | compile | norm-act | us/step | kernels/step "
        "| busy us/step | busy us per family |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        cells = [r["recipe"], r["precision"], r["layout"], "on" if r["autotune"] else "off", r["conv"]]
        cells += ["on" if r["compile"] else "off", "on" if r.get("norm_act") else "off"]
        cells += [str(r.get(k, r.get("error", ""))) for k in ("us_per_step", "kernels", "busy_us")]
        cells.append(", ".join(f"{k} {v}" for k, v in r.get("families", {}).items()))
        lines.append("| " + " | ".join(cells) + " |")
    save(out, env, rows, lines)


if __name__ == "__main__":
    main()
