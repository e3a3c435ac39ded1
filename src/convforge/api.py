"""The Python API that the CLI and users script against. Each function mirrors one CLI command."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ._config import from_dict, load_yaml, merge
from .engine import TrainConfig, TrainResult
from .errors import ConfigError


def _parse_shape(text: str | tuple[int, ...]) -> tuple[int, ...]:
    if isinstance(text, tuple):
        return text
    try:
        shape = tuple(int(v) for v in str(text).replace("x", ",").split(","))
    except ValueError:
        raise ConfigError(f"--input must look like C,H,W (e.g. 3,32,32), not {text!r}") from None
    if len(shape) != 3 or min(shape) <= 0:
        raise ConfigError(f"--input must be three positive numbers C,H,W, not {text!r}")
    return shape


def train(
    source: str | Path | None = None,
    *,
    config: str | Path | TrainConfig | dict | None = None,
    resume: str | Path | None = None,
    recipe: str | None = None,
    progress: bool | None = None,
    log=print,
    on_epoch=None,
    **options: Any,
) -> TrainResult:
    """Train a network on a folder or built-in dataset (default: scikit-learn's digits) and write a Run.

    ``options`` are TrainConfig fields (epochs=, model=, solver=, lr=, ...); values flow defaults -> config
    (a YAML path, dict or TrainConfig) -> recipe -> options.
    """
    from .engine.loop import train as run_training

    if isinstance(config, TrainConfig):
        cfg = config
    elif isinstance(config, dict):
        cfg = from_dict(TrainConfig, config)
    elif config is not None:
        cfg = load_yaml(TrainConfig, config)
    else:
        cfg = TrainConfig()
    if recipe is not None:
        from .engine.recipes import RECIPES

        return RECIPES.get(recipe)(
            cfg, source=source, resume=resume, progress=progress, log=log, on_epoch=on_epoch, **options
        )
    if source is not None:
        options["source"] = str(source)
    if resume is not None:
        return run_training(cfg, resume=resume, progress=progress, log=log, on_epoch=on_epoch, **options)
    cfg = merge(cfg, **options)
    if cfg.lr == "suggested":
        from .studies.lr_find import suggest_lr

        cfg = merge(cfg, lr=suggest_lr(cfg))
        log(f"lr-find suggests --lr {cfg.lr:g}")
    return run_training(cfg, progress=progress, log=log, on_epoch=on_epoch)


def evaluate(run: str | Path, source: str | None = None, *, data_dir: str | None = None, top_k: int = 5) -> dict:
    """Metrics of a Run on its test split (or on `source`); writes report.md, plots and evaluation.json."""
    from .evaluation import evaluate_run

    return evaluate_run(run, source, data_dir=data_dir, top_k=top_k)


def load(run: str | Path, device: str = "auto"):
    """A Predictor for a Run: ``convforge.load(run).predict(paths)``."""
    from .predictor import Predictor

    return Predictor(run, device=device)


def predict(run: str | Path, paths, *, top_k: int = 1, batch_size: int = 256, device: str = "auto", csv=None):
    """Class and top-k probabilities for image files or folders, one dict per image."""
    rows = load(run, device=device).predict(paths, top_k=top_k, batch_size=batch_size)
    if csv is not None:
        from .predictor import write_csv

        write_csv(rows, csv)
    return rows


def inspect_data(
    source: str, *, grid: str | Path | None = None, data_dir: str | None = None, cache_dir: str | None = None
) -> dict:
    """Counts per class, sizes, modes and problems of a dataset; optionally a PNG grid of random samples."""
    from .data import DataConfig, inspect_source, load_data, sample_grid

    cfg = DataConfig(source=str(source), data_dir=data_dir, cache_dir=cache_dir)
    report = inspect_source(cfg)
    if grid is not None:
        splits = load_data(cfg, progress=False)
        report["grid"] = str(sample_grid(splits.train, grid))
    return report


def list_models() -> list[dict[str, str]]:
    from .models import MODELS, describe

    return [{"name": name, "description": describe(name)} for name in MODELS.names()]


def show_model(model: str, *, input_shape: str | tuple = "1,28,28", num_classes: int = 10, as_dict: bool = False):
    """The summary table of a zoo model or spec file for an input shape and class count."""
    from .models import format_summary, resolve_spec, summary_rows

    spec = resolve_spec(model, in_shape=_parse_shape(input_shape), num_classes=num_classes)
    if as_dict:
        return {"name": spec.name, "params": spec.param_count, "layers": summary_rows(spec)}
    return format_summary(spec)


def codegen(
    run: str | Path,
    out: str | Path,
    *,
    backend: str = "native",
    precision: str = "fp32",
    max_batch: int = 256,
    arch: str | None = None,
    build: bool = False,
    verify: bool = False,
    bench: bool = False,
) -> dict:
    """Write a standalone CUDA C++ project for a Run; optionally build, verify against PyTorch, benchmark."""
    from .cudagen import codegen as generate_project

    return generate_project(
        run,
        out,
        backend=backend,
        precision=precision,
        max_batch=max_batch,
        arch=arch,
        build=build,
        verify=verify,
        bench=bench,
    )


def export(run: str | Path, out: str | Path, *, format: str = "onnx") -> Path:
    """Export a Run's model to ONNX or TorchScript, checked against PyTorch on the same inputs."""
    from .cudagen.export import export as export_model

    return export_model(run, out, format=format)
