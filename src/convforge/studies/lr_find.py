"""lr-find: the learning-rate range test (Smith 2017; fastai's lr_find).

The rate grows exponentially from `min_lr` to `max_lr` over `steps` optimizer steps on the training data; the
test stops once it diverges (a bias-corrected exponential moving average of the loss above 4x its best). The
curve used for the suggestion is a centred moving average (no lag: an EMA with beta 0.98 over 100 steps lags by
about 50 steps, which moved the steepest point half a decade too high on digits). Suggested rate: the steepest
descent of the smoothed loss against log(lr), or the minimum's rate / 10.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from .._config import merge
from ..engine.config import TrainConfig
from ..errors import ConfigError
from ._common import StudyResult, plt, quiet_log, render, save_figure, study_dir, write_report

METHODS = ("steepest", "min10")


def _check(min_lr: float, max_lr: float, steps: int, method: str) -> None:
    if not 0 < min_lr < max_lr:
        raise ConfigError(f"--min-lr and --max-lr must satisfy 0 < min < max, not {min_lr:g} and {max_lr:g}")
    if steps < 10:
        raise ConfigError(f"--steps must be at least 10, not {steps}")
    if method not in METHODS:
        raise ConfigError(f"--method must be one of {', '.join(METHODS)}, not {method!r}")


def range_test(
    cfg: TrainConfig,
    min_lr: float = 1e-7,
    max_lr: float = 10.0,
    steps: int = 100,
    beta: float = 0.9,
    log: Callable[[str], None] = quiet_log,
) -> dict[str, list[float]]:
    """Run the test with cfg's data, model, solver and augmentation; returns lrs, raw and smoothed losses."""
    from ..data import load_data
    from ..engine.loop import Trainer, cfg_to_data, seed_everything
    from ..run import Run

    seed_everything(cfg.seed, cfg.deterministic)
    splits = load_data(cfg_to_data(cfg), progress=False)
    tr = Trainer(merge(cfg, lr=min_lr), Run(Path(".")), splits, log)  # Run is never written: no epochs run
    tr.model.train()
    ratio = (max_lr / min_lr) ** (1 / (steps - 1))
    lrs, losses = [], []
    avg, best = 0.0, math.inf
    order = torch.empty(0, dtype=torch.long)
    while len(lrs) < steps:
        if len(order) == 0:
            order = tr.epoch_order()
        idx, order = order[: cfg.batch_size], order[cfg.batch_size :]
        lr = min_lr * ratio ** len(lrs)
        for group in tr.optimizer.param_groups:
            group["lr"] = lr
        loss, _ = tr.step(*tr.batch(idx))
        value = loss.item()  # host sync per step: the test needs each loss to decide when to stop
        avg = beta * avg + (1 - beta) * value
        smoothed = avg / (1 - beta ** (len(lrs) + 1))
        lrs.append(lr)
        losses.append(value)
        best = min(best, smoothed)
        if not math.isfinite(smoothed) or (len(lrs) > 5 and smoothed > 4 * best):
            break
    return {"lr": lrs, "loss": losses, "smoothed": centred_average(losses, max(5, steps // 15))}


def centred_average(values: list[float], window: int) -> list[float]:
    """Moving average over `window` points centred on each one (shrinking at the ends); non-finite values skipped."""
    half = window // 2
    out = []
    for i in range(len(values)):
        part = [v for v in values[max(0, i - half) : i + half + 1] if math.isfinite(v)]
        out.append(sum(part) / len(part) if part else math.inf)
    return out


def suggestions(curve: dict[str, list[float]], skip_start: int = 5, skip_end: int = 3) -> dict[str, float]:
    """{'steepest': lr at the most negative slope of smoothed loss vs log lr, 'min10': lr at the minimum / 10}."""
    lrs, sm = curve["lr"], curve["smoothed"]
    if len(lrs) < 3 or not any(math.isfinite(v) for v in sm):
        raise ConfigError("the learning-rate range test diverged at once; lower --min-lr")
    lo, hi = min(skip_start, max(len(lrs) - 3, 0)), max(len(lrs) - skip_end, 2)
    if hi - lo < 2:
        lo, hi = 0, len(lrs)
    finite = [i for i in range(lo, hi) if math.isfinite(sm[i])] or [i for i in range(len(lrs)) if math.isfinite(sm[i])]
    i_min = min(finite, key=lambda i: sm[i])
    slopes = {}
    for i in range(max(lo, 1), min(hi, len(lrs) - 1, i_min + 1)):  # descent happens before the minimum
        if math.isfinite(sm[i + 1]) and math.isfinite(sm[i - 1]):
            slopes[i] = (sm[i + 1] - sm[i - 1]) / math.log(lrs[i + 1] / lrs[i - 1])
    i_steep = min(slopes, key=slopes.get) if slopes else i_min
    return {"steepest": lrs[i_steep], "min10": lrs[i_min] / 10, "min_loss_lr": lrs[i_min]}


def suggest_lr(cfg: TrainConfig, method: str = "steepest", **range_options: Any) -> float:
    """The learning rate the range test suggests for cfg (for `convforge train --lr suggested`)."""
    _check(
        range_options.get("min_lr", 1e-7), range_options.get("max_lr", 10.0), range_options.get("steps", 100), method
    )
    return float(f"{suggestions(range_test(cfg, **range_options))[method]:.3g}")


def lr_find(
    source: str = "digits",
    *,
    min_lr: float = 1e-7,
    max_lr: float = 10.0,
    steps: int = 100,
    method: str = "steepest",
    out: str | Path | None = None,
    config: TrainConfig | None = None,
    **options: Any,
) -> StudyResult:
    """The range test as a study: lr_find.png, results.json, report.md and the suggested rate."""
    _check(min_lr, max_lr, steps, method)
    cfg = merge(config or TrainConfig(), source=source, **options)
    folder = study_dir("lr-find", out)
    curve = range_test(cfg, min_lr, max_lr, steps)
    sug = suggestions(curve)
    chosen = float(f"{sug[method]:.3g}")
    rows = [{"method": m, "lr": sug[m], "chosen": "*" if m == method else ""} for m in METHODS]
    text, md = render(rows, [("method", "method", ""), ("lr", "suggested lr", ".3g"), ("chosen", "used", "")])
    files = {"plot": _plot(curve, sug, method, folder / "lr_find.png")}
    notes = [
        f"data: {cfg.source}; model: {cfg.model}; solver: {cfg.solver}; batch {cfg.batch_size}; "
        f"{len(curve['lr'])} of {steps} steps from {min_lr:g} to {max_lr:g}",
        f"suggested learning rate: {chosen:g} ({method}); train with `convforge train --lr {chosen:g}`",
    ]
    files.update(
        write_report(
            folder,
            "Learning-rate range test",
            md,
            rows,
            {
                "source": cfg.source,
                "model": cfg.model,
                "solver": cfg.solver,
                "suggested_lr": chosen,
                "method": method,
                "curve": curve,
            },
            notes,
        )
    )
    return StudyResult("lr-find", folder, rows, text, md, files, extra={"suggested_lr": chosen})


def _plot(curve: dict[str, list[float]], sug: dict[str, float], method: str, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot(curve["lr"], curve["loss"], alpha=0.3, label="loss")
    ax.plot(curve["lr"], curve["smoothed"], label="smoothed loss")
    for name, style in (("steepest", "--"), ("min10", ":")):
        ax.axvline(
            sug[name], linestyle=style, color="red" if name == method else "gray", label=f"{name}: {sug[name]:.2g}"
        )
    ax.set_xscale("log")
    finite = [v for v in curve["smoothed"] if math.isfinite(v)]
    if finite:
        ax.set_ylim(min(finite) * 0.9, min(max(finite), 4 * min(finite)) * 1.1)
    ax.set(xlabel="learning rate (log)", ylabel="training loss", title="learning-rate range test")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    return save_figure(fig, path)
