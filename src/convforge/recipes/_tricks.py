"""Recipe tricks that act on a Trainer (through engine.fast.MODEL_SETUP / SETUP) or on its final model.

Learned from public descriptions of the CIFAR-10 speed runs (David Page's "How to train your ResNet" posts and
KellerJordan/cifar10-airbench): a frozen first conv that whitens 2x2 patches, logits scaled down by a constant,
and horizontal-flip test-time augmentation. Own code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from ..engine.schedules import make_scheduler
from ..inference import batched_logits

if TYPE_CHECKING:
    from ..data import ImageSet
    from ..engine.loop import Trainer


@torch.no_grad()
def whiten_first_conv(tr: Trainer, images: int = 5000, eps: float = 5e-4) -> None:
    """Set the first conv (k x k, 2 C k k filters) to +- the eigenvectors of the training images' k x k patch
    covariance, each divided by sqrt(eigenvalue + eps), and freeze it: its outputs are decorrelated, unit variance."""
    conv = next(m for m in tr.model.modules() if isinstance(m, nn.Conv2d))
    x = (tr.x_train[:images].to(tr.offset.device).float() - tr.offset) * tr.scale  # as Trainer.batch
    c, (kh, kw) = x.shape[1], conv.weight.shape[2:]
    patches = x.unfold(2, kh, 1).unfold(3, kw, 1).permute(0, 2, 3, 1, 4, 5).reshape(-1, c * kh * kw)
    cov = (patches.T @ patches / len(patches)).double().cpu()
    vals, vecs = torch.linalg.eigh(cov)
    w = (vecs.T / (vals.clamp_min(0) + eps).sqrt()[:, None]).reshape(-1, c, kh, kw)
    if conv.weight.shape[0] != 2 * len(w):
        raise ValueError(f"the whitening conv needs {2 * len(w)} filters, not {conv.weight.shape[0]}")
    conv.weight.copy_(torch.cat([w, -w]).float())
    conv.weight.requires_grad_(False)  # no grad: the solver skips it and DDP (which wraps after this) leaves it out


def freeze_first_conv_bias(tr: Trainer, epoch: int, after: int) -> None:
    """An epoch hook: from 0-based epoch `after` on, the first conv's bias stops training (airbench trains its
    whitening bias for 3 epochs: it has converged by then). Its gradient was the only one below the second conv, so
    that conv's input gradient, the activation's backward and the bias sum leave the step too. A captured step is
    captured again (engine/fast/graph.py GraphStep.invalidate)."""
    conv = next(m for m in tr.model.modules() if isinstance(m, nn.Conv2d))
    if epoch < after or conv.bias is None or not conv.bias.requires_grad:
        return
    conv.bias.requires_grad_(False)
    conv.bias.grad = None  # the solver skips a parameter without a gradient
    if tr.fast is not None:
        tr.fast.invalidate()


def scale_head(tr: Trainer, factor: float, base: tuple[float, float] | None = None) -> None:
    """Train the last dense layer as if its output were multiplied by `factor` (logits x 1/9 in airbench).

    Exact reparametrization for SGD: weights x factor at init, lr x factor^2, weight decay / factor^2 (so lr x wd,
    the decay per step, is unchanged), in a param group of its own with the same schedule. `base`: the (lr,
    weight decay) scaled; by default the first param group's.
    """
    head = [m for m in tr.model.modules() if isinstance(m, nn.Linear)][-1]
    with torch.no_grad():
        head.weight.mul_(factor)
    own_group(tr, list(head.parameters()), factor**2, base)


def scale_norm_bias_lr(tr: Trainer, factor: float, base: tuple[float, float] | None = None) -> None:
    """Batchnorm shifts learn `factor` times faster, with the same decay per step (airbench: x64)."""
    biases = [m.bias for m in tr.model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    own_group(tr, [b for b in biases if b is not None and b.requires_grad], factor, base)


def muon_groups(tr: Trainer, settings: dict) -> tuple[float, float]:
    """Solver muon in a recipe: the orthogonalized groups take `settings`' ns_steps and normalize (then no weight
    decay: the filters' scale is held fixed instead); the plain groups (biases, normalization, head) its Nesterov
    SGD: sgd_lr, sgd_momentum and sgd_decay (lr x weight decay, per step). Returns (sgd_lr, its weight decay), the
    base of groups scaled from it (scale_head, scale_norm_bias_lr)."""
    lr = settings["sgd_lr"]
    base = (lr, settings["sgd_decay"] / lr)
    for group in tr.optimizer.param_groups:
        if group["orthogonalize"]:
            group.update(ns_steps=settings["ns_steps"], normalize=settings["normalize"])
            if settings["normalize"]:
                group["weight_decay"] = 0.0
        else:
            group.update(lr=lr, initial_lr=lr, momentum=settings["sgd_momentum"], weight_decay=base[1])
    tr.scheduler = make_scheduler(tr.optimizer, tr.cfg, tr.steps_per_epoch)  # the new base lrs
    return base


def own_group(tr: Trainer, params: list[nn.Parameter], lr_factor: float, base: tuple[float, float] | None = None):
    """Move `params` to a new plain (not orthogonalized) param group with lr x lr_factor and weight decay /
    lr_factor (lr x wd unchanged), of `base` = (lr, weight decay) or by default the first group's."""
    opt = tr.optimizer
    first = opt.param_groups[0]
    lr, decay = base or (first.get("initial_lr", first["lr"]), first["weight_decay"])
    # the new group's other settings (momentum...): those of the first group not orthogonalized by Muon
    template = next((g for g in opt.param_groups if not g.get("orthogonalize")), first)
    new = {k: v for k, v in template.items() if k not in ("params", "initial_lr")}
    ids = {id(p) for p in params}
    for group in opt.param_groups:
        group["params"] = [p for p in group["params"] if id(p) not in ids]
        group["lr"] = group.get("initial_lr", group["lr"])
    opt.param_groups[1:] = [g for g in opt.param_groups[1:] if g["params"]]
    new.update(params=params, lr=lr * lr_factor, weight_decay=decay / lr_factor)
    if "orthogonalize" in new:
        new.update(orthogonalize=False, normalize=False)
    opt.add_param_group(new)
    tr.scheduler = make_scheduler(opt, tr.cfg, tr.steps_per_epoch)  # one lambda per group, base lrs re-read


@torch.no_grad()
def tta_accuracy(tr: Trainer, data: ImageSet, level: int = 1) -> float:
    """Accuracy with test-time augmentation (eval mode; one host sync).

    level 1: the mean of the logits of each image and its mirror image. level 2 (airbench's): half of that, plus a
    quarter each for the same pair shifted one pixel up-left and one pixel down-right (reflect padding). level 3:
    the same half for the shifts split over all four diagonal one-pixel shifts.
    """
    precision = tr.precision if tr.device.type == "cuda" else "fp32"
    kw = dict(batch_size=1024, device=tr.device, precision=precision)

    def mirrored(images: torch.Tensor) -> torch.Tensor:
        logits = batched_logits(tr.model, images, tr.mean, tr.std, **kw)
        return logits + batched_logits(tr.model, images.flip(3), tr.mean, tr.std, **kw)

    logits = mirrored(data.images)
    if level >= 2:
        h, w = data.images.shape[2:]
        padded = F.pad(data.images.float(), (1, 1, 1, 1), mode="reflect").to(data.images.dtype)
        corners = [(0, 0), (2, 2)] + ([(0, 2), (2, 0)] if level >= 3 else [])
        shifted = sum(mirrored(padded[:, :, y : y + h, x : x + w]) for y, x in corners)
        logits = logits + shifted / len(corners)
    return (logits.argmax(1) == data.labels.to(tr.device)).float().mean().item()
