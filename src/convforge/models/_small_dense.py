"""A small dense layer (and the flatten before it, the ReLU after it) as one autograd op of Triton kernels, for
training and prediction under autocast on CUDA.

Why: at the same-recipe models' batch sizes (32-128 rows) a dense layer is launches, not arithmetic. digits-cnn's
1568 -> 10 classifier took ~30 us of a 184 us training step (H200, torch 2.11, benchmarks/results/
step_variants_smallconv_*.md): the flatten of the channels_last map (a copy forward and backward), autocast's cast
of the weight, three cuBLAS GEMMs, the cast of the weight gradient back to fp32 and a separate bias-gradient
reduction. Here it is three launches: forward (reading the map through its strides: no flatten copy), input gradient
(written in the map's layout) and weight + bias gradients (fp32, one pass over the rows: no partial sums needed at
these batch sizes). A following ReLU runs in the forward's epilogue and gates the output gradient in the backward.

Numerics as autocast's linear: bf16 (or fp16) operands, fp32 accumulation, one rounding of the output; the weight
gradient kept in fp32. SpecNet (models/build.py) routes top-level (Flatten,) Linear (, ReLU) runs here; fp32
training, export, torch.compile, the CPU and modules with hooks keep PyTorch's layers.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from torch import nn

from . import _kernels

ENABLED = True  # benchmarks switch the Triton path off to measure cuBLAS's
# Rows and multiply-adds of one forward up to which the kernels run (digits-cnn's classifier at batch 128: 2 M;
# simple-cnn's 1152 -> 128 at batch 32: 4.7 M). cifar10-fast's 256 -> 10 head at 1024 rows took 62 us a step here
# against cuBLAS's ~30 (step_variants_smalldense_*.md): the weight gradient's one pass over the rows is a long loop.
MAX_ROWS, MAX_MACS = 128, 2**26
# Launch shapes (benchmarks/small_conv_speed.py --dense, H200: small_dense_sweep_*.json; one change at a time from
# 32-row forward programs and 128-feature input-gradient programs, these two saved 2-5 us each of the five layers'
# 14-27 us). Forward: rows x output features per program, input features per dot, and dots per program: the feature
# axis is split over programs (partial sums + a finishing pass) beyond FORWARD_DOTS dots.
FORWARD_ROWS, FORWARD_K, FORWARD_OUT, FORWARD_DOTS = 16, 64, 64, 2
GRAD_ROWS, GRAD_K = 32, 32  # input gradient: rows x input features per program
WGRAD_ROWS, WGRAD_K = 64, 64  # weight gradient: rows per dot, input features per program
WARPS = 4
# Dense, ReLU, dense (with at most PAIR_OUT outputs): one op whose backward is two launches side by side, the hidden
# layer's gradient recomputed in both, instead of two levels of two (SmallDensePair). Alternating same-recipe runs in
# one process (H200, same_recipe_ab_pair_*.txt): later epochs simple-cnn 130.0 -> 125.2 ms, Fashion MLP 62.8 -> 54.3.
PAIR, PAIR_OUT = True, 64  # PAIR: benchmarks switch pairs off


def starts(layers: nn.ModuleList) -> dict[int, int]:
    """{index the op starts at: index of its Linear} for each top-level Linear, starting at the nn.Flatten(1) before
    it where there is one."""
    found = {}
    for j, layer in enumerate(layers):
        if type(layer) is nn.Linear:
            before = layers[j - 1] if j else None
            flatten = type(before) is nn.Flatten and before.start_dim == 1 and before.end_dim == -1
            found[j - 1 if flatten else j] = j
    return found


def macs(linear: nn.Linear, rows: int) -> int:
    """Multiply-adds of the layer's forward over `rows` rows."""
    return rows * linear.in_features * linear.out_features


def usable(layers: nn.ModuleList, start: int, j: int, x: torch.Tensor) -> bool:
    """The op from layer `start` to the Linear at `j` may run on the kernels for this input: autocast to bf16/fp16 on
    CUDA, a 4-d map into a flatten or a matrix into the Linear, matching features, an fp32 contiguous weight, a small
    problem (MAX_ROWS, MAX_MACS), and the checks every fused path shares (on the flatten too)."""
    linear = layers[j]
    if type(linear) is not nn.Linear or (start != j and type(layers[start]) is not nn.Flatten):
        return False  # replaced since the model was built
    if not torch.is_autocast_enabled("cuda") or torch.get_autocast_dtype("cuda") not in (torch.bfloat16, torch.half):
        return False
    dims = (4, 2) if start != j else (2,)
    if x.dim() not in dims or x[0].numel() != linear.in_features:
        return False
    if linear.weight.dtype != torch.float32 or not linear.weight.is_contiguous():
        return False
    if x.shape[0] > MAX_ROWS or macs(linear, x.shape[0]) > MAX_MACS:
        return False
    return _kernels.may_fuse(ENABLED, x, *layers[start : j + 1], dims=dims)


def small_dense(linear: nn.Linear, x: torch.Tensor, relu: bool) -> torch.Tensor:
    """linear(x.flatten(1)), then ReLU when `relu`, under autocast: the output in autocast's type."""
    return SmallDense.apply(x, linear.weight, linear.bias, relu, torch.get_autocast_dtype("cuda"))


def pairs(layers: nn.ModuleList, starts: dict[int, int]) -> dict[int, int]:
    """{index a pair starts at: index of its second Linear} for each (flatten,) Linear, ReLU, Linear run of `starts`
    whose second Linear has no ReLU after it and at most PAIR_OUT outputs (a classifier head)."""
    found = {}
    for start, j in starts.items():
        if j + 2 < len(layers) and _kernels.fuses_relu(layers[j + 1]) and starts.get(j + 2) == j + 2:
            after = layers[j + 3] if j + 3 < len(layers) else None
            if layers[j + 2].out_features <= PAIR_OUT and not _kernels.fuses_relu(after):
                found[start] = j + 2
    return found


def pair_usable(layers: nn.ModuleList, start: int, j2: int, x: torch.Tensor) -> bool:
    """The pair from `start` to the Linear at `j2` may run on the pair kernels: the first Linear usable on this input
    (usable), the second an fp32 contiguous Linear on its outputs with a ReLU between them, small, without hooks."""
    if not (PAIR and usable(layers, start, j2 - 2, x)):
        return False
    second = layers[j2]
    if type(second) is not nn.Linear or not _kernels.fuses_relu(layers[j2 - 1]):
        return False  # replaced since the model was built
    if second.weight.dtype != torch.float32 or not second.weight.is_contiguous():
        return False
    if second.in_features != layers[j2 - 2].out_features or macs(second, x.shape[0]) > MAX_MACS:
        return False
    return not any(m._forward_hooks or m._forward_pre_hooks for m in layers[j2 - 1 : j2 + 1])


def small_dense_pair(first: nn.Linear, second: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """second(relu(first(x.flatten(1)))) under autocast: the output in autocast's type."""
    dtype = torch.get_autocast_dtype("cuda")
    return SmallDensePair.apply(x, first.weight, first.bias, second.weight, second.bias, dtype)


@functools.cache
def _source():
    from . import _small_dense_triton

    return _small_dense_triton


def _block(size: int, cap: int) -> int:
    return max(16, min(cap, 1 << (size - 1).bit_length()))  # tl.dot's smallest side is 16


def _map(x: torch.Tensor) -> tuple[int, ...]:
    """(K, H*W, W, row stride, channel, height and width strides) of x read as rows x K."""
    if x.dim() == 2:
        return x.shape[1], 1, 1, x.stride(0), x.stride(1), 0, 0
    _, c, h, w = x.shape
    return c * h * w, h * w, w, *x.stride()


def compile_jobs(linear: nn.Linear, relu: bool, in_dtype: torch.dtype, dtype: torch.dtype) -> list[Callable]:
    """The compiles (or loads from Triton's disk cache) of the kernels a training step launches for `linear` on
    `in_dtype` inputs under `dtype` autocast, as calls that run none of them (engine/warmup.py)."""
    k, out, bias, f32 = _source(), linear.out_features, linear.bias is not None, torch.float32
    sizes, options, split = [2**20] * 8, _options(out), _splits(linear.in_features)[0] > 1
    partial = f32 if split else dtype  # unsplit, a launch passes its output as the (unused) partial sums
    jobs = [_kernels.ahead(k.dense_forward, in_dtype, f32, f32, dtype, partial, *sizes, 2**20, grid=(1, 1, 1),
                           OUT=out, HAS_BIAS=bias, ACT=int(relu), SPLIT=split, **options["forward"])]  # fmt: skip
    if split:
        jobs.append(_kernels.ahead(k.dense_finish, f32, f32, dtype, 2**20, 2**20, grid=(1, 1), OUT=out,
                                   HAS_BIAS=bias, ACT=int(relu), **options["finish"]))  # fmt: skip
    if in_dtype == dtype:  # a first layer's input wants no gradient
        jobs.append(_kernels.ahead(k.dense_input_grad, dtype, dtype, f32, dtype, *sizes, grid=(1, 1),
                                   OUT=out, GATE=relu, **options["input"]))  # fmt: skip
    jobs.append(_kernels.ahead(k.dense_weight_grad, in_dtype, dtype, dtype, f32, f32, *sizes, grid=(1, 1),
                               OUT=out, GATE=relu, HAS_BIAS=bias, **options["weight"]))  # fmt: skip
    return jobs


def compile_pair_jobs(first: nn.Linear, second: nn.Linear, in_dtype: torch.dtype,
                      dtype: torch.dtype) -> list[Callable]:  # fmt: skip
    """compile_jobs for a pair's backward kernels (its forward takes each Linear's): `in_dtype` is the first Linear's
    input type."""
    k, f32, sizes = _source(), torch.float32, [2**20] * 8
    hidden, out2 = first.out_features, second.out_features
    shapes = dict(H=hidden, OUT2=out2, B2=_block(out2, PAIR_OUT))
    jobs = []
    if in_dtype == dtype:  # a first layer's input wants no gradient
        jobs.append(_kernels.ahead(k.pair_input_grad, dtype, f32, dtype, f32, dtype, *sizes, grid=(1, 1), **shapes,
                                   **_options(hidden)["input"]))  # fmt: skip
    biases = dict(HAS_BIAS1=first.bias is not None, HAS_BIAS2=second.bias is not None)
    jobs.append(_kernels.ahead(k.pair_weight_grad, in_dtype, dtype, f32, dtype, *[f32] * 4, *sizes, grid=(1, 1),
                               **shapes, **biases, **_options(hidden)["weight"]))  # fmt: skip
    return jobs


def _splits(features: int) -> tuple[int, int]:
    """Programs the forward splits the feature axis over (1: no split), and features per program."""
    blocks = _kernels.cdiv(features, FORWARD_K)
    per_split = _kernels.cdiv(blocks, _kernels.cdiv(blocks, FORWARD_DOTS)) * FORWARD_K
    return _kernels.cdiv(features, per_split), per_split


@functools.cache
def _options(out: int) -> dict[str, dict]:
    bo = _block(out, FORWARD_OUT)
    return {
        "forward": dict(BM=FORWARD_ROWS, BK=FORWARD_K, BO=bo, num_warps=WARPS),
        "finish": dict(BM=FORWARD_ROWS, BO=bo, num_warps=WARPS),  # the forward's output tiles
        "input": dict(BM=GRAD_ROWS, BK=GRAD_K, BO=bo, num_warps=WARPS),
        "weight": dict(BM=WGRAD_ROWS, BK=WGRAD_K, BO=bo, num_warps=WARPS),
    }


def _forward(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, relu: bool,
             dtype: torch.dtype) -> torch.Tensor:  # fmt: skip
    """act(x.flatten(1) @ weight.T + bias) in `dtype`: the forward kernels (with the split's finishing pass)."""
    k, (rows, features), out = _source(), (x.shape[0], weight.shape[1]), weight.shape[0]
    y = torch.empty((rows, out), dtype=dtype, device=x.device)
    options, (splits, per_split) = _options(out), _splits(features)
    partial = torch.empty((splits, rows, out), dtype=torch.float32, device=x.device) if splits > 1 else y
    tiles = options["forward"]
    grid = (_kernels.cdiv(rows, tiles["BM"]), _kernels.cdiv(out, tiles["BO"]))
    flags = dict(OUT=out, HAS_BIAS=bias is not None, ACT=int(relu))
    bias = weight if bias is None else bias
    _kernels.launcher(k.dense_forward, (*grid, splits))(
        x, weight, bias, y, partial, rows, *_map(x), per_split, SPLIT=splits > 1, **flags, **tiles
    )  # fmt: skip
    if splits > 1:
        _kernels.launcher(k.dense_finish, grid)(partial, bias, y, rows, splits, **flags, **options["finish"])
    return y


class SmallDense(torch.autograd.Function):
    """act(x.flatten(1) @ weight.T + bias) with act ReLU or none, computed in `dtype`; gradients for all three."""

    @staticmethod
    def forward(ctx, x, weight, bias, relu, dtype):
        y = _forward(x, weight, bias, relu, dtype)
        ctx.save_for_backward(x, weight, y if relu else None)
        ctx.has_bias, ctx.dtype = bias is not None, dtype
        return y

    @staticmethod
    def backward(ctx, dy):
        x, weight, y = ctx.saved_tensors
        k = _source()
        dy = dy.contiguous().to(ctx.dtype)
        gate = dy if y is None else y
        rows, out = dy.shape
        options = _options(out)
        dx = dw = db = None
        input_grad = weight_grads = None
        if ctx.needs_input_grad[0]:
            dx = torch.empty_like(x, dtype=ctx.dtype)  # x's layout (channels_last maps stay so)
            opt = options["input"]
            grid = (_kernels.cdiv(rows, opt["BM"]), _kernels.cdiv(weight.shape[1], opt["BK"]))
            input_grad = functools.partial(
                _kernels.launcher(k.dense_input_grad, grid), dy, gate, weight, dx, rows, *_map(dx), OUT=out,
                GATE=y is not None, **opt,
            )  # fmt: skip
        if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
            dw = torch.empty(weight.shape, dtype=torch.float32, device=weight.device)
            db = torch.empty(out, dtype=torch.float32, device=weight.device) if ctx.has_bias else None
            opt = options["weight"]
            grid = (_kernels.cdiv(weight.shape[1], opt["BK"]), _kernels.cdiv(out, opt["BO"]))
            weight_grads = functools.partial(
                _kernels.launcher(k.dense_weight_grad, grid), x, dy, gate, dw, dw if db is None else db, rows,
                *_map(x), OUT=out, GATE=y is not None, HAS_BIAS=ctx.has_bias, **opt,
            )  # fmt: skip
        _kernels.side_by_side(input_grad, weight_grads)  # independent: beside each other in a captured step
        return None if dx is None else dx.to(x.dtype), dw, db, None, None


class SmallDensePair(torch.autograd.Function):
    """(relu(x.flatten(1) @ w1.T + b1)) @ w2.T + b2 computed in `dtype`; gradients for x and the four parameters,
    in two launches side by side (models/_small_dense_triton.py pair_input_grad, pair_weight_grad)."""

    @staticmethod
    def forward(ctx, x, w1, b1, w2, b2, dtype):
        h = _forward(x, w1, b1, True, dtype)
        ctx.save_for_backward(x, w1, h, w2)
        ctx.has_bias, ctx.dtype = (b1 is not None, b2 is not None), dtype
        return _forward(h, w2, b2, False, dtype)

    @staticmethod
    def backward(ctx, dy):
        x, w1, h, w2 = ctx.saved_tensors
        k = _source()
        dy = dy.contiguous().to(ctx.dtype)
        rows, (hidden, features), out2 = dy.shape[0], w1.shape, w2.shape[0]
        sizes = dict(H=hidden, OUT2=out2, B2=_block(out2, PAIR_OUT))
        grads: list[torch.Tensor | None] = [None] * 5
        input_grad = weight_grads = None
        if ctx.needs_input_grad[0]:
            dx = grads[0] = torch.empty_like(x, dtype=ctx.dtype)  # x's layout (channels_last maps stay so)
            opt = _options(hidden)["input"]
            grid = (_kernels.cdiv(rows, opt["BM"]), _kernels.cdiv(features, opt["BK"]))
            input_grad = functools.partial(
                _kernels.launcher(k.pair_input_grad, grid), dy, w2, h, w1, dx, rows, *_map(dx), **sizes, **opt
            )
        if any(ctx.needs_input_grad[1:5]):
            f32 = dict(dtype=torch.float32, device=w1.device)
            dw1, dw2 = torch.empty(w1.shape, **f32), torch.empty(w2.shape, **f32)
            db1 = torch.empty(hidden, **f32) if ctx.has_bias[0] else dw1
            db2 = torch.empty(out2, **f32) if ctx.has_bias[1] else dw2
            grads[1:5] = dw1, db1 if ctx.has_bias[0] else None, dw2, db2 if ctx.has_bias[1] else None
            opt = _options(hidden)["weight"]
            grid = (_kernels.cdiv(features, opt["BK"]), _kernels.cdiv(hidden, opt["BO"]))
            weight_grads = functools.partial(
                _kernels.launcher(k.pair_weight_grad, grid), x, dy, w2, h, dw1, db1, dw2, db2, rows, *_map(x), **sizes,
                HAS_BIAS1=ctx.has_bias[0], HAS_BIAS2=ctx.has_bias[1], **opt,
            )  # fmt: skip
        _kernels.side_by_side(input_grad, weight_grads)  # independent: beside each other in a captured step
        dx = grads[0]
        return None if dx is None else dx.to(x.dtype), *grads[1:], None
