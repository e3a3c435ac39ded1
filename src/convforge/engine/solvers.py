"""Solvers by name, each with its usual defaults (those of Keras/PyTorch documentation)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

from .._registry import Registry
from . import kernels
from .dynamo_free import StepWithoutDynamo
from .muon import Muon, hidden_matrices


class SGD(StepWithoutDynamo, torch.optim.SGD):
    """torch.optim.SGD, stepping without the torch._dynamo import."""


class RMSprop(StepWithoutDynamo, torch.optim.RMSprop):
    """torch.optim.RMSprop, stepping without the torch._dynamo import."""


SOLVERS: Registry[Callable[..., torch.optim.Optimizer]] = Registry("solver")
DEFAULT_LR = {"sgd": 0.01, "sgdm": 0.01, "nesterov": 0.01, "adam": 1e-3, "adamw": 1e-3, "rmsprop": 1e-3, "muon": 0.02}


def _fused_kwargs(params: list, fused: bool) -> dict:
    # fused kernels: one launch per step for all params (CUDA only); Adam's big tensors: engine/kernels.py
    return {"fused": True} if fused and all(p.is_cuda for p in params) else {}


def _capturable(opt: torch.optim.Optimizer, capturable: bool) -> torch.optim.Optimizer:
    """Mark an optimizer safe to capture in a CUDA graph (step counters on the device; engine/fast/graph.py)."""
    if capturable and all(p.is_cuda for g in opt.param_groups for p in g["params"]):
        for group in opt.param_groups:
            if "capturable" in group:
                group["capturable"] = True
        opt._warned_capturable_if_run_uncaptured = True  # the tail batch runs uncaptured, by design
    return opt


@SOLVERS.register("sgd")
def sgd(params, lr, momentum, weight_decay, fused=False):
    return SGD(params, lr=lr, momentum=0.0, weight_decay=weight_decay, **_fused_kwargs(params, fused))


@SOLVERS.register("sgdm")
def sgdm(params, lr, momentum, weight_decay, fused=False):
    m = 0.9 if momentum is None else momentum
    return SGD(params, lr=lr, momentum=m, weight_decay=weight_decay, **_fused_kwargs(params, fused))


@SOLVERS.register("nesterov")
def nesterov(params, lr, momentum, weight_decay, fused=False):
    m = 0.9 if momentum is None else momentum
    return SGD(params, lr=lr, momentum=m, nesterov=True, weight_decay=weight_decay, **_fused_kwargs(params, fused))


@SOLVERS.register("adam")
def adam(params, lr, momentum, weight_decay, fused=False):
    betas = (0.9 if momentum is None else momentum, 0.999)
    return kernels.Adam(params, lr=lr, betas=betas, weight_decay=weight_decay, **_fused_kwargs(params, fused))


@SOLVERS.register("adamw")
def adamw(params, lr, momentum, weight_decay, fused=False):
    betas = (0.9 if momentum is None else momentum, 0.999)
    return kernels.AdamW(params, lr=lr, betas=betas, weight_decay=weight_decay, **_fused_kwargs(params, fused))


@SOLVERS.register("rmsprop")
def rmsprop(params, lr, momentum, weight_decay, fused=False):
    # alpha 0.9 as Keras' RMSprop (rho=0.9); PyTorch's own default is 0.99
    m = 0.0 if momentum is None else momentum
    return RMSprop(params, lr=lr, alpha=0.9, momentum=m, weight_decay=weight_decay)


@SOLVERS.register("muon")
def muon(params, lr, momentum, weight_decay, fused=False):
    # Muon for the hidden weights; the rest by Nesterov SGD at the same lr and momentum
    hidden = hidden_matrices(params)
    ids = {id(p) for p in hidden}
    rest = [p for p in params if id(p) not in ids]
    groups = [dict(params=hidden, orthogonalize=True), dict(params=rest)]
    m = 0.95 if momentum is None else momentum
    return Muon([g for g in groups if g["params"]], lr=lr, momentum=m, weight_decay=weight_decay,
                **_fused_kwargs(params, fused))  # fmt: skip


def make_optimizer(
    name: str,
    params: Iterable[torch.nn.Parameter],
    lr: float | None,
    momentum: float | None = None,
    weight_decay: float = 0.0,
    fused: bool = False,
    capturable: bool = False,
) -> torch.optim.Optimizer:
    factory = SOLVERS.get(name)
    params = [p for p in params if p.requires_grad]
    opt = factory(params, DEFAULT_LR[name] if lr is None else lr, momentum, weight_decay, fused)
    return _capturable(opt, capturable)
