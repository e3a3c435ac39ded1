"""Study commands: compare-solvers, lr-find, tune, baselines, faces detect, bench devices, bench conv.

Thin: parse, call a function in studies/ or bench/, print the table and the study folder. `cli.py` wires them in
with `register(app, bench_app)`.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from ._cli_options import with_config_options as _with_config_options
from .data import DataConfig
from .engine.config import TrainConfig

SourceArg = Annotated[str, typer.Argument(help="A folder or a built-in dataset name.")]
OutOpt = Annotated[Path | None, typer.Option(help="Study folder [default: studies/<name>-<time>].")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


def with_config_options(cls: type, skip: set[str]):
    """The config's options minus those the command defines itself (the config may grow a field of that name)."""

    def decorate(fn):
        own = set(inspect.signature(fn).parameters)
        return _with_config_options(cls, skip=skip | own)(fn)

    return decorate


def _given(options: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in options.items() if v is not None}


def _names(text: str | None) -> tuple[str, ...] | None:
    return tuple(v.strip() for v in text.split(",") if v.strip()) if text else None


def _show(result, as_json: bool, last: str | None = None) -> None:
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2, default=str))
        return
    typer.echo(result.text)
    typer.echo(f"study folder: {result.out}")
    if last:
        typer.echo(last)


ALL_SOLVERS = "sgd,sgdm,nesterov,adam,adamw,rmsprop,muon"  # studies.solvers.SOLVER_NAMES (not imported: torch)


@with_config_options(TrainConfig, skip={"source", "solver", "lr", "epochs", "time_budget_s", "out"})
def compare_solvers(
    source: SourceArg = "digits",
    solvers: Annotated[str, typer.Option(help="Comma-separated solvers.")] = ALL_SOLVERS,
    epochs: Annotated[int | None, typer.Option(help="Epochs per solver [default: 10 without --time-budget].")] = None,
    time_budget: Annotated[float | None, typer.Option(help="Seconds of training per solver.")] = None,
    sweep: Annotated[int, typer.Option(help="Learning rates per solver around its default; best kept.")] = 1,
    out: OutOpt = None,
    as_json: JsonOpt = False,
    **options: Any,
) -> None:
    """Train each solver on the same model, data, seed and budget; accuracy, loss curves and time."""
    from .studies.solvers import compare_solvers as study

    result = study(
        source,
        solvers=_names(solvers),
        epochs=epochs,
        time_budget_s=time_budget,
        sweep=sweep,
        out=out,
        log=_log(as_json),
        **_given(options),
    )
    _show(result, as_json)


@with_config_options(TrainConfig, skip={"source", "lr", "epochs", "time_budget_s", "out", "schedule"})
def lr_find(
    source: SourceArg = "digits",
    min_lr: Annotated[float, typer.Option(help="First learning rate.")] = 1e-7,
    max_lr: Annotated[float, typer.Option(help="Last learning rate.")] = 10.0,
    steps: Annotated[int, typer.Option(help="Optimizer steps of the test.")] = 100,
    method: Annotated[str, typer.Option(help="steepest | min10")] = "steepest",
    out: OutOpt = None,
    as_json: JsonOpt = False,
    **options: Any,
) -> None:
    """The learning-rate range test: plots the smoothed loss against the rate and prints a suggested rate."""
    from .studies.lr_find import lr_find as study

    result = study(source, min_lr=min_lr, max_lr=max_lr, steps=steps, method=method, out=out, **_given(options))
    _show(result, as_json, f"suggested lr: {result.extra['suggested_lr']:g}")


@with_config_options(TrainConfig, skip={"source", "epochs", "out"})
def tune(
    source: SourceArg = "digits",
    space: Annotated[Path | None, typer.Option(help="Search space YAML [default: lr, batch, momentum, ...].")] = None,
    trials: Annotated[int, typer.Option(help="Trials to add to the study.")] = 20,
    epochs: Annotated[int, typer.Option(help="Epochs per trial.")] = 5,
    storage: Annotated[str | None, typer.Option(help="SQLite file or DB URL [default: <out>/study.db].")] = None,
    study_name: Annotated[str, typer.Option(help="Study name in the storage; re-running continues it.")] = (
        "convforge-tune"
    ),
    sampler_seed: Annotated[int, typer.Option(help="Seed of the TPE sampler.")] = 0,
    timeout: Annotated[float | None, typer.Option(help="Stop starting trials after this many seconds.")] = None,
    out: OutOpt = None,
    as_json: JsonOpt = False,
    **options: Any,
) -> None:
    """Hyperparameter search with Optuna (TPE, median pruning); writes best.yaml for `train --config`."""
    from .studies.tune import tune as study

    result = study(
        source,
        space=space,
        trials=trials,
        epochs=epochs,
        storage=storage,
        study_name=study_name,
        seed=sampler_seed,
        timeout_s=timeout,
        out=out,
        log=_log(as_json),
        **_given(options),
    )
    _show(result, as_json, f"best config: {result.extra['best_config']}")


@with_config_options(DataConfig, skip={"source", "min_classes"})
def baselines(
    source: SourceArg = "digits",
    run: Annotated[Path | None, typer.Option(help="A Run folder: its split and its CNN accuracy.")] = None,
    methods: Annotated[str | None, typer.Option(help="Comma-separated subset of the methods.")] = None,
    max_train: Annotated[int, typer.Option(help="Training images used at most (stratified subsample).")] = 20000,
    svm_subsample: Annotated[int, typer.Option(help="Training images for the RBF SVM.")] = 5000,
    out: OutOpt = None,
    as_json: JsonOpt = False,
    **options: Any,
) -> None:
    """Classical machine learning on the CNN's split: logistic regression, SVMs, k-NN, random forest, HOG+SVM."""
    from .studies.baselines import METHODS
    from .studies.baselines import baselines as study

    result = study(
        source,
        methods=_names(methods) or METHODS,
        run=run,
        max_train=max_train,
        svm_subsample=svm_subsample,
        out=out,
        log=_log(as_json),
        **_given(options),
    )
    _show(result, as_json)


def faces_detect(
    images: Annotated[list[Path], typer.Argument(help="Image files or folders.")],
    crop_to: Annotated[Path | None, typer.Option(help="Write each face as a PNG into DIR/<label>/.")] = None,
    label: Annotated[str, typer.Option(help="Class folder name for the crops.")] = "face",
    cascade: Annotated[str, typer.Option(help="default | alt | alt2 | profile")] = "default",
    scale_factor: Annotated[float, typer.Option(help="Image pyramid step (> 1).")] = 1.1,
    min_neighbors: Annotated[int, typer.Option(help="Detections needed to keep a face.")] = 5,
    min_size: Annotated[int, typer.Option(help="Smallest face in pixels.")] = 30,
    crop_size: Annotated[int | None, typer.Option(help="Resize crops to this square size.")] = None,
    out: OutOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Detect faces with OpenCV's Haar cascades; annotated images and optional crops ready for training."""
    from .studies.faces import detect

    result = detect(
        images,
        out=out,
        crop_to=crop_to,
        label=label,
        cascade=cascade,
        scale_factor=scale_factor,
        min_neighbors=min_neighbors,
        min_size=min_size,
        crop_size=crop_size,
    )
    _show(result, as_json, f"faces: {result.extra['total_faces']}")


@with_config_options(TrainConfig, skip={"source", "epochs", "device", "precision", "out"})
def bench_devices(
    source: SourceArg = "digits",
    epochs: Annotated[int, typer.Option(help="Epochs in every row.")] = 2,
    threads: Annotated[str | None, typer.Option(help="Comma-separated CPU thread counts [default: 1,all].")] = None,
    out: OutOpt = None,
    as_json: JsonOpt = False,
    **options: Any,
) -> None:
    """One recipe on CPU, GPU without/with cuDNN, cuDNN autotuned and convforge's GPU path; speedups."""
    from .bench.devices import bench_devices as study

    counts = tuple(int(t) for t in _names(threads)) if threads else None
    result = study(source, epochs=epochs, threads=counts, out=out, log=_log(as_json), **_given(options))
    _show(result, as_json)


def bench_conv(
    batches: Annotated[str | None, typer.Option(help="Comma-separated batch sizes [default: 16,64; CPU 2,8].")] = None,
    dtypes: Annotated[str, typer.Option(help="fp32, bf16 or both.")] = "fp32,bf16",
    impls: Annotated[str | None, typer.Option(help="Comma-separated implementations [default: all].")] = None,
    small: Annotated[bool, typer.Option(help="Toy shapes instead of AlexNet/VGG/ResNet (always on CPU).")] = False,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = "auto",
    time_limit: Annotated[float | None, typer.Option(help="Start no new shape after this many seconds.")] = None,
    out: OutOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Direct, im2col, FFT, Winograd and cuDNN convolutions: time, memory, TFLOP/s, checked against F.conv2d."""
    from .bench.conv import bench_conv as study

    sizes = tuple(int(b) for b in _names(batches)) if batches else None
    result = study(
        out=out,
        small=small,
        batches=sizes,
        dtypes=_names(dtypes),
        device=device,
        impls=_names(impls),
        time_limit_s=time_limit,
        log=_log(as_json),
    )
    _show(result, as_json)


def _log(as_json: bool):
    return (lambda s: typer.echo(s, err=True)) if as_json else typer.echo


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    """Add the study commands to `app` and the benchmarks to `bench_app`."""
    app.command("compare-solvers")(compare_solvers)
    app.command("lr-find")(lr_find)
    app.command("tune")(tune)
    app.command("baselines")(baselines)
    faces_app = typer.Typer(no_args_is_help=True, help="Face detection (OpenCV Haar cascades).")
    faces_app.command("detect")(faces_detect)
    app.add_typer(faces_app, name="faces")
    bench_app.command("devices")(bench_devices)
    bench_app.command("conv")(bench_conv)
