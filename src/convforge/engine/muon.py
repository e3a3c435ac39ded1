"""Muon: momentum orthogonalized by Newton-Schulz, for hidden conv and dense weights; Nesterov SGD for the rest.

Muon (Keller Jordan, 2024; the CIFAR-10 speed runs' airbench94_muon) replaces a weight matrix's momentum by the
nearest semi-orthogonal matrix, U V^T of its SVD U S V^T, approximated by a few Newton-Schulz iterations, so that
every direction of the update moves at the same rate. A conv filter bank (out, in, kh, kw) is treated as the
(out, in * kh * kw) matrix it multiplies the unfolded input with.

Why our own and not torch.optim.Muon: torch's takes only 2-D parameters and reads its lr as a Python number, so a
step captured in a CUDA graph (engine/fast/graph.py sets each step's lr as a device tensor) would freeze the lr;
here filters of similar size are orthogonalized together, zero-padded to one shape, in one chain of batched
products (fewer launches: cifar10-fast's step 486 -> 239 us; padding is exact: the iteration keeps a block-diagonal
input so).
"""

from __future__ import annotations

import math

import torch

from .dynamo_free import StepWithoutDynamo

# Keller Jordan's quintic: the steepest slope at zero that keeps the singular values within ~(0.7, 1.2) after
# 5 steps, so small singular values grow fast and the result need not converge to exactly 1
NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)
# A padded stack's size over its matrices': one stack for cifar10-fast's filter banks (2.1x) and folder-fast's
# (3.5x) took 239 / 376 us a step, 2-3 stacks within 2x 301 / 434 us, one per shape 486 / 887 us
# (H200, muon_speed_*_gram_side.md): launches cost more than the padding's arithmetic
PAD_LIMIT = 4.0
# ...while the stack is small (latency-bound); past this many elements padding costs arithmetic: at most 1.25x
STACK_ELEMENTS = 2**24


def orthogonalize(matrices: torch.Tensor, steps: int = 5, scale: torch.Tensor | None = None) -> torch.Tensor:
    """Approximately U V^T for each matrix of a (batch, rows, cols) stack, times `scale` (a tensor that broadcasts
    over (batch, 1, 1)) if given, computed in bfloat16. 5 steps lift singular values down to ~1% of the largest
    one into ~(0.6, 1.2); smaller ones less.

    Each step is x <- (a I + b G + c G^2) x with G = x x^T: the polynomial is formed on the small Gram side, so the
    large stack is read by two products a step and nothing else. The input's scaling (x / ||x||_F, which bounds the
    spectral norm by 1) and `scale` fold into the first and last polynomials; ||x||_F^2 is the first Gram matrix's
    trace.
    """
    a, b, c = NS_COEFFICIENTS
    x = matrices.bfloat16()
    tall = x.size(-2) > x.size(-1)
    if tall:  # the Gram matrix of the shorter side is the cheaper one
        x = x.mT
    if steps < 1:
        raise ValueError(f"Newton-Schulz steps must be at least 1, not {steps}")
    for step in range(steps):
        gram = x @ x.mT
        factors = []  # what this step's polynomial is multiplied by
        if step == 0:
            squared = gram.diagonal(dim1=-2, dim2=-1).float().sum(-1)[:, None, None].clamp_min(1e-14)
            gram = (gram / squared).bfloat16()
            factors.append(squared.rsqrt())
        if step == steps - 1 and scale is not None:
            factors.append(scale)
        poly = torch.baddbmm(gram, gram, gram, beta=b, alpha=c)
        poly.diagonal(dim1=-2, dim2=-1).add_(a)
        for factor in factors:
            poly = (poly * factor).bfloat16()
        x = poly @ x
    return x.mT if tall else x


class Muon(StepWithoutDynamo, torch.optim.SGD):
    """torch.optim.SGD (Nesterov) whose param groups with `orthogonalize=True` take Muon steps instead.

    Such a group's parameters (2-D or more) step by lr x sqrt(max(1, rows / cols)) x the orthogonalized Nesterov
    momentum, with decoupled weight decay (w <- w (1 - lr wd)). `normalize=True` (airbench94_muon) rescales each
    weight to Frobenius norm sqrt(out features) before its step: behind a batchnorm the scale is free, so the step's
    relative size stays fixed without weight decay. `ns_steps`: Newton-Schulz iterations (3 suffice for a CNN).
    """

    def __init__(self, params, lr: float, momentum: float = 0.95, weight_decay: float = 0.0, ns_steps: int = 5,
                 fused: bool | None = None) -> None:  # fmt: skip
        self._extra = dict(orthogonalize=False, normalize=False, ns_steps=ns_steps)
        self._scratch: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}  # padded stack and scales, per layout
        super().__init__(params, lr=lr, momentum=momentum, nesterov=True, weight_decay=weight_decay, fused=fused)
        self.defaults.update(self._extra)

    def add_param_group(self, param_group: dict) -> None:
        for key, value in self._extra.items():
            param_group.setdefault(key, value)
        flat = [p for p in param_group["params"] if isinstance(p, torch.Tensor) and p.ndim < 2]
        if param_group["orthogonalize"] and flat:
            raise ValueError(f"Muon orthogonalizes matrices only, not a parameter of shape {tuple(flat[0].shape)}")
        super().add_param_group(param_group)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        groups = self.param_groups
        for group in groups:
            if group["orthogonalize"]:
                self._muon_step(group)
        plain = [g for g in groups if not g["orthogonalize"]]
        if plain:
            self.param_groups = plain  # SGD's own (fused) update for the other groups
            try:
                super().step()
            finally:
                self.param_groups = groups
        return loss

    def _muon_step(self, group: dict) -> None:
        params = [p for p in group["params"] if p.grad is not None]
        if not params:
            return
        lr, momentum, decay = group["lr"], group["momentum"], group["weight_decay"]
        grads = [p.grad for p in params]
        for p in params:
            if "momentum_buffer" not in self.state[p]:
                self.state[p]["momentum_buffer"] = torch.zeros_like(p)
        bufs = [self.state[p]["momentum_buffer"] for p in params]
        torch._foreach_mul_(bufs, momentum)
        torch._foreach_add_(bufs, grads)
        updates = torch._foreach_add(grads, bufs, alpha=momentum)  # Nesterov: g + m * buf
        if group["normalize"]:
            norms = torch._foreach_norm(params)
            torch._foreach_div_(params, norms)
            torch._foreach_mul_(params, [math.sqrt(p.shape[0]) for p in params])
        if decay:
            torch._foreach_mul_(params, 1 - lr * decay)
        shapes = [(p.shape[0], p[0].numel()) for p in params]
        for members in _buckets(shapes):
            picked = [shapes[i] for i in members]
            stack, scales = self._stack(picked, params[0].device)
            slots = _slots(stack, picked)
            torch._foreach_copy_(slots, [_as_matrix(updates[i], params[i]) for i in members])
            ortho = orthogonalize(stack, group["ns_steps"], lr * scales)  # lr may be a device tensor (captured)
            for slot, i in zip(_slots(ortho, picked), members):
                target = _as_matrix(params[i], params[i])
                if target.data_ptr() == params[i].data_ptr():  # a view: the usual case
                    target.sub_(slot)
                else:  # neither contiguous nor channels_last: the columns are in logical order
                    params[i].sub_(slot.reshape(params[i].shape))

    def _stack(self, shapes: list[tuple[int, int]], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """A zeroed (matrices, short side, long side) bf16 stack for these shapes, and each one's lr factor."""
        key = (tuple(shapes), device)
        if key not in self._scratch:
            short, long = max(min(s) for s in shapes), max(max(s) for s in shapes)
            stack = torch.zeros(len(shapes), short, long, dtype=torch.bfloat16, device=device)
            scales = torch.tensor([math.sqrt(max(1.0, r / c)) for r, c in shapes], device=device).view(-1, 1, 1)
            self._scratch[key] = stack, scales
        return self._scratch[key]


def hidden_matrices(params) -> list:
    """The parameters the muon solver orthogonalizes: every weight of 2 or more dimensions but the last, which is the
    output layer (Muon's authors leave it, like biases and normalization parameters, to a plain solver)."""
    return [p for p in params if p.ndim >= 2][:-1]


def warm_up(device: torch.device, shapes: list[tuple[int, int]]) -> None:
    """One Muon step, with its Nesterov SGD part, on random parameters of these (rows, cols) shapes: loads the
    batched bf16 products' cuBLAS kernels and the step's foreach kernels before training needs them
    (engine/warmup.py). Lazily loaded, the products had made a fresh process's first cifar10-fast epoch ~0.3 s longer,
    the foreach ops ~47 ms of its first step (H200, first_cifar10-fast_*.log)."""
    if not shapes:
        return
    matrices = [torch.randn(rows, cols, device=device) for rows, cols in shapes]
    bias = torch.zeros(max(rows for rows, _ in shapes), device=device)
    for p in [*matrices, bias]:
        p.grad = torch.randn_like(p)
    groups = [dict(params=matrices, orthogonalize=True, normalize=True), dict(params=[bias])]
    Muon(groups, lr=0.01, weight_decay=1e-4, ns_steps=1, fused=device.type == "cuda").step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _buckets(shapes: list[tuple[int, int]]) -> list[list[int]]:
    """The matrices grouped into zero-padded stacks, largest first: one joins a stack while the stack's padded size
    stays within PAD_LIMIT x the matrices' own (cifar10-fast's six filter banks and folder-fast's nine make one
    stack each; a net with one very large matrix keeps it apart from the small ones)."""
    order = sorted(range(len(shapes)), key=lambda i: shapes[i][0] * shapes[i][1], reverse=True)
    buckets: list[list[int]] = []
    short = long = area = 0
    for i in order:
        r, c = min(shapes[i]), max(shapes[i])
        grown = (max(short, r), max(long, c))
        padded, own = (len(buckets[-1]) + 1 if buckets else 1) * grown[0] * grown[1], area + r * c
        if buckets and padded <= own * (PAD_LIMIT if padded <= STACK_ELEMENTS else 1.25):
            buckets[-1].append(i)
            (short, long), area = grown, area + r * c
        else:
            buckets.append([i])
            short, long, area = r, c, r * c
    return buckets


def _slots(stack: torch.Tensor, shapes: list[tuple[int, int]]) -> list[torch.Tensor]:
    """Each matrix's (rows, cols) view into the stack (a tall one is kept transposed: short side first)."""
    return [stack[j, :r, :c] if r <= c else stack[j, :c, :r].mT for j, (r, c) in enumerate(shapes)]


def _as_matrix(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """`t` as a (out, rest) matrix whose columns follow `like`'s memory order: a view of a tensor laid out like
    `like` (channels_last filters included), so the update can be subtracted in place. Orthogonalization commutes
    with permuting columns, so the order is free."""
    if like.ndim == 4 and not like.is_contiguous() and like.is_contiguous(memory_format=torch.channels_last):
        t = t.permute(0, 2, 3, 1)
    return t.reshape(t.shape[0], -1)
