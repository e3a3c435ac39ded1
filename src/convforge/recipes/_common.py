"""Machinery shared by the recipes: fill a TrainConfig from a recipe's HYP, then run the ordinary engine.

A recipe is data plus a spec (STYLE rule 2): its HYP are TrainConfig fields, its network a zoo entry registered
under the recipe's own name, so the Run it writes is an ordinary Run (`convforge evaluate/predict` work on it).
Values flow: defaults -> --config -> recipe HYP -> options given by the user.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .._config import merge
from ..engine import TrainConfig, TrainResult


def block(filters: int, pool: bool = True, act: str = "relu", **norm: Any) -> list[dict[str, Any]]:
    """conv -> (maxpool) -> batchnorm -> act -> conv -> batchnorm -> act: airbench's block (`norm`: batchnorm
    options beside its momentum 0.4, e.g. scale=False, eps=1e-12)."""
    conv = {"conv": {"filters": filters, "kernel": 3, "padding": "same", "bias": False}}
    bn = {"batchnorm": {"momentum": 0.4, **norm}}
    layers: list[dict[str, Any]] = [conv]
    if pool:
        layers.append({"maxpool": {"kernel": 2}})
    return layers + [bn, act, conv, bn, act]


def head(pool: str = "global_avgpool") -> list[Any]:
    return [pool, {"dense": {"units": "classes", "bias": False}}, "softmax"]


def split_for(held_out: float) -> tuple[float, ...]:
    """Hold out a test fraction; a set with an official test set (MNIST...) keeps it and trains on all of train."""
    return (1.0 - held_out, 0.0, held_out)


def run_recipe(
    hyp: dict[str, Any],
    cfg: TrainConfig,
    *,
    source: str | None,
    default_source: str,
    held_out: float = 0.2,
    resume=None,
    progress: bool | None = None,
    log: Callable[[str], None] = print,
    on_epoch=None,
    **options: Any,
) -> TrainResult:
    from ..engine.loop import train

    src = str(source or options.pop("source", None) or default_source)
    if resume is not None:
        return train(cfg, resume=resume, progress=progress, log=log, on_epoch=on_epoch, **options)
    base = merge(cfg, source=src, split=split_for(held_out), **hyp)
    return train(base, progress=progress, log=log, on_epoch=on_epoch, **options)
