"""A Triton Adam/AdamW update for big parameter tensors, and the Adam classes that use it on CUDA.

Why: PyTorch's fused Adam (multi_tensor_apply) gives each 65,536-element chunk of a tensor one thread block, which
walks it in 32 serial iterations (~32 us on an H200). A model whose biggest tensor holds 20k-1M elements therefore
leaves most of the GPU idle for tens of microseconds a step: 35 of the 106 us of a Fashion-MNIST MLP step at batch 32
(its 784 x 128 weight; benchmarks/results/step_profile_NVIDIA-H200_2026-11-22.md). Here a big tensor is updated by
one program per 1,024 elements, and the small tensors still go through PyTorch's fused kernel (one launch for all).

Same arithmetic as PyTorch's fused Adam, in fp32: weight decay (L2 into the gradient, or decoupled for AdamW),
both moments, bias corrections from the step count, p -= lr / bc1 * m / (sqrt(v) / sqrt(bc2) + eps). lr and the step
count may be device tensors (capturable, as in a CUDA graph) or host numbers. The optimizer state (step, exp_avg,
exp_avg_sq) is PyTorch's, so checkpoints are those of torch.optim.Adam.
"""

from __future__ import annotations

import functools
import math

import torch

from ..models._kernels import available, cdiv, compile_ahead
from .dynamo_free import StepWithoutDynamo

BIG = 16384  # elements from which a tensor goes to the Triton kernel (a fused chunk then takes >= 8 iterations)
BLOCK = 1024


@functools.cache
def _adam_kernel():
    import triton
    import triton.language as tl

    @triton.jit(do_not_specialize=["n", "lr_ptr", "step_ptr"])  # no variant per lr view
    def adam(p, g, m, v, lr_ptr, step_ptr, n, lr, step, beta1, beta2, log2_beta1, log2_beta2, eps, wd,
             LR_TENSOR: tl.constexpr, STEP_TENSOR: tl.constexpr, DECOUPLED: tl.constexpr,
             BLOCK: tl.constexpr):  # fmt: skip
        offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < n
        if LR_TENSOR:
            lr = tl.load(lr_ptr).to(tl.float32)
        if STEP_TENSOR:
            step = tl.load(step_ptr).to(tl.float32)
        param = tl.load(p + offs, mask=mask).to(tl.float32)
        grad = tl.load(g + offs, mask=mask).to(tl.float32)
        if DECOUPLED:
            param = param - lr * wd * param
        else:
            grad = grad + wd * param
        exp_avg = beta1 * tl.load(m + offs, mask=mask) + (1 - beta1) * grad
        exp_avg_sq = beta2 * tl.load(v + offs, mask=mask) + (1 - beta2) * grad * grad
        step_size = lr / (1 - tl.exp2(step * log2_beta1))
        denom = tl.sqrt(exp_avg_sq) / tl.sqrt(1 - tl.exp2(step * log2_beta2)) + eps
        tl.store(m + offs, exp_avg, mask=mask)
        tl.store(v + offs, exp_avg_sq, mask=mask)
        tl.store(p + offs, param - step_size * exp_avg / denom, mask=mask)

    return adam


def adam_update(param: torch.Tensor, grad: torch.Tensor, exp_avg: torch.Tensor, exp_avg_sq: torch.Tensor,
                step: torch.Tensor | float, lr: torch.Tensor | float, betas: tuple[float, float], eps: float,
                weight_decay: float, decoupled: bool) -> None:  # fmt: skip
    """One Adam step on fp32 tensors laid out alike (walked as flat arrays), in place; `step` counts this step."""
    b1, b2 = betas
    lr_t, step_t = isinstance(lr, torch.Tensor), isinstance(step, torch.Tensor)
    if step_t and not step.is_cuda and param.is_cuda:  # a host step counter (not capturable): pass its value
        step, step_t = step.item(), False
    n = param.numel()
    args = (param, grad, exp_avg, exp_avg_sq, lr if lr_t else param, step if step_t else param, n,
            0.0 if lr_t else float(lr), 0.0 if step_t else float(step), b1, b2, math.log2(b1), math.log2(b2), eps,
            float(weight_decay))  # fmt: skip
    options = dict(STEP_TENSOR=step_t, DECOUPLED=decoupled, BLOCK=BLOCK, num_warps=4)
    kernel = _adam_kernel()
    if param.is_cuda and not torch.cuda.is_current_stream_capturing():
        _compile_both_lr_kinds(kernel, args, options)
    kernel[(cdiv(n, BLOCK),)](*args, LR_TENSOR=lr_t, **options)


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
    for lr_t in (False, True):
        call = (*args[:4], lr_tensor if lr_t else args[4], *args[5:])
        compile_ahead(kernel, *call, LR_TENSOR=lr_t, grid=(1,), **options)
    _COMPILED.add(key)


class _BigTensorsInTriton:
    """Mixin for torch.optim.Adam/AdamW built with fused=True: tensors of >= BIG elements take the Triton update."""

    def _big(self, group: dict) -> list[torch.Tensor]:
        if not (group.get("fused") and available()) or group["amsgrad"] or group["maximize"]:
            return []
        return [p for p in group["params"] if p.grad is not None and p.numel() >= BIG and _plain(p)]

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
            loss = super().step(closure)  # the small tensors: PyTorch's fused kernel, one launch
        finally:
            for group, params in zip(self.param_groups, kept):
                group["params"] = params
        decoupled = isinstance(self, torch.optim.AdamW) or self.defaults.get("decoupled_weight_decay", False)
        for group, big in zip(self.param_groups, bigs):
            states = [self._state_for(p) for p in big]
            if states:
                torch._foreach_add_([s["step"] for s in states], 1.0)
            for p, s in zip(big, states):
                adam_update(p, p.grad, s["exp_avg"], s["exp_avg_sq"], s["step"], group["lr"], group["betas"],
                            group["eps"], group["weight_decay"], decoupled)  # fmt: skip
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
