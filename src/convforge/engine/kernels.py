"""A Triton Adam/AdamW update for small models' and big tensors, and the Adam classes that use it on CUDA.

Why: PyTorch's fused Adam (multi_tensor_apply) gives each 65,536-element chunk of a tensor one thread block, which
walks it in 32 serial iterations (~32 us on an H200). A model whose biggest tensor holds 20k-1M elements therefore
leaves most of the GPU idle for tens of microseconds a step: 35 of the 106 us of a Fashion-MNIST MLP step at batch 32
(its 784 x 128 weight; benchmarks/results/step_profile_NVIDIA-H200_2026-11-22.md). Here a tensor is updated by one
program per 1,024 elements, up to SLOTS tensors in one launch: a small model's whole group (one launch a step), or a
big model's big tensors (its small ones still go through PyTorch's fused kernel, one launch for all).

Same arithmetic as PyTorch's fused Adam, in fp32: weight decay (L2 into the gradient, or decoupled for AdamW),
both moments, bias corrections from the step count, p -= lr / bc1 * m / (sqrt(v) / sqrt(bc2) + eps). lr and the step
count may be device tensors (capturable, as in a CUDA graph) or host numbers. The optimizer state (step, exp_avg,
exp_avg_sq) is PyTorch's, so checkpoints are those of torch.optim.Adam.
"""

from __future__ import annotations

import functools
import math

import torch

from ..models._kernels import available, cdiv, compile_ahead, launcher
from .dynamo_free import StepWithoutDynamo

BIG = 16384  # elements from which a tensor goes to the Triton kernel (a fused chunk then takes >= 8 iterations)
BLOCK = 1024
# Tensors one launch updates (each its own run of programs). A group of at most SLOTS tensors goes to the Triton
# kernel whole, small tensors included: simple-cnn's eight took PyTorch's fused kernel for the seven small ones
# (6 us: its 9,216-element conv weight is one block's serial walk) plus a Triton launch for the big one (2.7 us) in
# a captured step (H200, adam_split_*.md); larger groups send their big tensors here, SLOTS per launch.
SLOTS = 8  # as many as _adam_triton.adam has
WHOLE_GROUP = SLOTS  # tensors of a group up to which it goes whole (benchmarks set 0: big tensors only)


@functools.cache
def _adam_kernel():
    from . import _adam_triton

    return _adam_triton.adam


def adam_update(param: torch.Tensor, grad: torch.Tensor, exp_avg: torch.Tensor, exp_avg_sq: torch.Tensor,
                step: torch.Tensor | float, lr: torch.Tensor | float, betas: tuple[float, float], eps: float,
                weight_decay: float, decoupled: bool) -> None:  # fmt: skip
    """One Adam step on fp32 tensors laid out alike (walked as flat arrays), in place; `step` counts this step."""
    adam_updates([(param, grad, exp_avg, exp_avg_sq, step)], lr, betas, eps, weight_decay, decoupled)


def adam_updates(tensors: list[tuple], lr: torch.Tensor | float, betas: tuple[float, float], eps: float,
                 weight_decay: float, decoupled: bool) -> None:  # fmt: skip
    """adam_update for each (param, grad, exp_avg, exp_avg_sq, step) of `tensors`, SLOTS tensors per launch. The
    steps are all device tensors (a captured or fused optimizer's) or all host values."""
    for first in range(0, len(tensors), SLOTS):
        _launch(tensors[first : first + SLOTS], lr, betas, eps, weight_decay, decoupled)


def _launch(tensors: list[tuple], lr: torch.Tensor | float, betas: tuple[float, float], eps: float,
            weight_decay: float, decoupled: bool) -> None:  # fmt: skip
    """One launch for up to SLOTS tensors; host step counts that differ between them take a launch each."""
    b1, b2 = betas
    param0, step0 = tensors[0][0], tensors[0][4]
    lr_t, step_t = isinstance(lr, torch.Tensor), isinstance(step0, torch.Tensor)
    if step_t and not step0.is_cuda and param0.is_cuda:  # host step counters (not capturable): pass their value
        tensors = [(*t[:4], float(t[4])) for t in tensors]
        step_t = False
    if not step_t and len({float(t[4]) for t in tensors}) > 1:  # one step value a launch
        for t in tensors:
            _launch([t], lr, betas, eps, weight_decay, decoupled)
        return
    step = 0.0 if step_t else float(tensors[0][4])
    slots, end = [], 0
    for p, g, m, v, s in tensors:
        end += cdiv(p.numel(), BLOCK)
        slots += [p, g, m, v, s if step_t else p, p.numel(), end]
    slots += [*tensors[0][:4], param0, 0, end] * (SLOTS - len(tensors))  # unused: no programs
    scalars = (0.0 if lr_t else float(lr), step, b1, b2, math.log2(b1), math.log2(b2), eps, float(weight_decay))
    args = (lr if lr_t else param0, *scalars, *slots)
    options = dict(STEP_TENSOR=step_t, DECOUPLED=decoupled, BLOCK=BLOCK, num_warps=4)
    kernel = _adam_kernel()
    if param0.is_cuda and not torch.cuda.is_current_stream_capturing():
        _compile_both_lr_kinds(kernel, args, options)
    launcher(kernel, (end,))(*args, LR_TENSOR=lr_t, **options)


_COMPILED: set[tuple] = set()


def compile_adam(device: torch.device, decoupled: bool) -> None:
    """Compile (or load from Triton's disk cache) the update kernels a fused Adam (AdamW: `decoupled`) run on
    `device` launches, by one update of a dummy tensor (engine/warmup.py calls this while the data loads: the first
    MLP run in a process paid ~0.75 s for it inside its first step)."""
    param, grad, exp_avg, exp_avg_sq = (torch.zeros(BLOCK, device=device) for _ in range(4))
    step = torch.ones((), device=device)
    adam_update(param, grad, exp_avg, exp_avg_sq, step, 1e-3, (0.9, 0.999), 1e-8, 0.0, decoupled)


def _compile_both_lr_kinds(kernel, args: tuple, options: dict) -> None:
    """Compile the float-lr and the tensor-lr kernels at the first eager step: a CUDA graph captures later steps with
    the lr read from a device table (engine/fast/graph.py), and nothing may be compiled and loaded during a capture."""
    key = (args[0].device, args[0].dtype, tuple(sorted(options.items())))
    if key in _COMPILED:
        return
    lr_tensor = torch.zeros((), dtype=torch.float32, device=args[0].device)
    for lr_t in (False, True):  # lr_ptr is unspecialized: any fp32 tensor stands for it, read or not
        compile_ahead(kernel, lr_tensor, *args[1:], LR_TENSOR=lr_t, grid=(1,), **options)
    _COMPILED.add(key)


class _BigTensorsInTriton:
    """Mixin for torch.optim.Adam/AdamW built with fused=True: a group of at most SLOTS tensors takes the Triton
    update whole (one launch), a larger group its tensors of >= BIG elements."""

    def _big(self, group: dict) -> list[torch.Tensor]:
        if not (group.get("fused") and available()) or group["amsgrad"] or group["maximize"]:
            return []
        stepped = [p for p in group["params"] if p.grad is not None]
        plain = [p for p in stepped if _plain(p)]
        if len(plain) == len(stepped) <= WHOLE_GROUP:
            return plain
        return [p for p in plain if p.numel() >= BIG]

    @torch.no_grad()
    def step(self, closure=None):
        bigs = [self._big(group) for group in self.param_groups]
        if not any(bigs):
            return super().step(closure)
        kept = [group["params"] for group in self.param_groups]
        try:
            for group, big in zip(self.param_groups, bigs):
                ids = {id(p) for p in big}
                group["params"] = [p for p in group["params"] if id(p) not in ids]
            loss = super().step(closure)  # the other tensors: PyTorch's fused kernel, one launch
        finally:
            for group, params in zip(self.param_groups, kept):
                group["params"] = params
        decoupled = isinstance(self, torch.optim.AdamW) or self.defaults.get("decoupled_weight_decay", False)
        for group, big in zip(self.param_groups, bigs):
            states = [self._state_for(p) for p in big]
            if states:
                torch._foreach_add_([s["step"] for s in states], 1.0)
            tensors = [(p, p.grad, s["exp_avg"], s["exp_avg_sq"], s["step"]) for p, s in zip(big, states)]
            adam_updates(tensors, group["lr"], group["betas"], group["eps"], group["weight_decay"], decoupled)
        return loss

    def _state_for(self, p: torch.Tensor) -> dict:
        """torch.optim.Adam's state for `p`, created as its _init_group does for fused=True (step on the device)."""
        state = self.state[p]
        if not state:
            state["step"] = torch.zeros((), dtype=torch.float32, device=p.device)
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return state


def _plain(p: torch.Tensor) -> bool:
    """fp32 on CUDA, dense in memory (contiguous or channels_last) with its gradient laid out the same way: the
    kernel walks p, grad and both moments (created with preserve_format) as one flat array."""
    dense = p.is_contiguous() or (p.dim() == 4 and p.is_contiguous(memory_format=torch.channels_last))
    g = p.grad
    return p.is_cuda and p.dtype == torch.float32 and dense and not g.is_sparse and g.stride() == p.stride()


class Adam(_BigTensorsInTriton, StepWithoutDynamo, torch.optim.Adam):
    """torch.optim.Adam; with fused=True on CUDA, tensors of >= BIG elements are updated by a Triton kernel."""


class AdamW(_BigTensorsInTriton, StepWithoutDynamo, torch.optim.AdamW):
    """torch.optim.AdamW; with fused=True on CUDA, tensors of >= BIG elements are updated by a Triton kernel."""
