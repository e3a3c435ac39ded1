"""The command line: parse, call the API, print. No logic lives here."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from . import api
from ._cli_options import with_config_options
from .bench.train import register_train as register_train_bench
from .cli_studies import register as register_studies
from .engine.config import TrainConfig
from .errors import ConvforgeError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="convforge: labelled images -> trained, measured, deployable CNNs on GPUs.",
)
data_app = typer.Typer(no_args_is_help=True, help="Inspect datasets.")
models_app = typer.Typer(no_args_is_help=True, help="List and show network architectures.")
bench_app = typer.Typer(no_args_is_help=True, help="Timing studies: devices, convolution algorithms, training speed.")
app.add_typer(data_app, name="data")
app.add_typer(models_app, name="models")
app.add_typer(bench_app, name="bench")

JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


def show(obj: Any, as_json: bool = False) -> None:
    if as_json:
        typer.echo(json.dumps(obj, indent=2, default=str))
    elif isinstance(obj, str):
        typer.echo(obj)
    else:
        from .report_text import format_mapping

        typer.echo(format_mapping(obj))


@app.command()
@with_config_options(TrainConfig, skip={"source"})
def train(
    source: Annotated[str | None, typer.Argument(help="A folder or a built-in dataset name [default: digits]")] = None,
    config: Annotated[Path | None, typer.Option(help="A YAML config; options given here override it.")] = None,
    resume: Annotated[Path | None, typer.Option(help="Continue this Run folder from its last checkpoint.")] = None,
    recipe: Annotated[str | None, typer.Option(help="A named recipe, e.g. 'fast'.")] = None,
    **options: Any,
) -> None:
    """Train a network; prints the Run folder and, last, the test accuracy."""
    result = api.train(source, config=config, resume=resume, recipe=recipe, **options)
    typer.echo(f"run folder: {result.run.path}")
    acc = "n/a (no test images)" if result.test_accuracy is None else f"{result.test_accuracy:.2%}"
    typer.echo(f"test accuracy: {acc}")


@app.command()
def evaluate(
    run: Annotated[Path, typer.Argument(help="A Run folder.")],
    source: Annotated[
        str | None, typer.Argument(help="Other data to evaluate on [default: the run's test split]")
    ] = None,
    data_dir: Annotated[str | None, typer.Option(help="Where a built-in dataset's files are.")] = None,
    top_k: Annotated[int, typer.Option(help="Also report top-k accuracy.")] = 5,
    as_json: JsonOpt = False,
) -> None:
    """Accuracy, per-class metrics, confusion matrix and report.md for a Run."""
    result = api.evaluate(run, source, data_dir=data_dir, top_k=top_k)
    if as_json:
        show(result, as_json=True)
        return
    typer.echo(result["text"])
    typer.echo(f"report: {Path(run) / 'report.md'}")
    typer.echo(f"test accuracy: {result['accuracy']:.2%}")


@app.command()
def predict(
    run: Annotated[Path, typer.Argument(help="A Run folder.")],
    images: Annotated[list[Path], typer.Argument(help="Image files or folders.")],
    top_k: Annotated[int, typer.Option(help="How many classes to list per image.")] = 1,
    batch_size: Annotated[int, typer.Option(help="Images per forward pass.")] = 256,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = "auto",
    csv: Annotated[Path | None, typer.Option(help="Also write the predictions to this CSV file.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Classify images with a trained Run (same preprocessing as training)."""
    rows = api.predict(run, images, top_k=top_k, batch_size=batch_size, device=device, csv=csv)
    if as_json:
        show(rows, as_json=True)
        return
    from .report_text import prediction_table

    typer.echo(prediction_table(rows))


@data_app.command("inspect")
def data_inspect(
    source: Annotated[str, typer.Argument(help="A folder or a built-in dataset name.")] = "digits",
    grid: Annotated[Path | None, typer.Option(help="Write a PNG grid of random samples here.")] = None,
    data_dir: Annotated[str | None, typer.Option(help="Where a built-in dataset's files are.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Counts per class, image sizes and modes, problems, and a grid of samples."""
    report = api.inspect_data(source, grid=grid, data_dir=data_dir)
    if as_json:
        show(report, as_json=True)
        return
    from .report_text import inspect_text

    typer.echo(inspect_text(report))


@models_app.command("list")
def models_list(as_json: JsonOpt = False) -> None:
    """The named networks."""
    rows = api.list_models()
    show(rows if as_json else "\n".join(f"{r['name']:<19} {r['description']}" for r in rows), as_json=as_json)


@models_app.command("show")
def models_show(
    model: Annotated[str, typer.Argument(help="A model name or a spec file (.yaml/.json).")],
    input: Annotated[str, typer.Option("--input", help="Input shape C,H,W.")] = "1,28,28",
    classes: Annotated[int, typer.Option(help="Number of classes.")] = 10,
    as_json: JsonOpt = False,
) -> None:
    """A table of layers, output shapes and parameter counts."""
    show(api.show_model(model, input_shape=input, num_classes=classes, as_dict=as_json), as_json=as_json)


@app.command()
def codegen(
    run: Annotated[Path, typer.Argument(help="A Run folder.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the generated CUDA C++ project.")],
    backend: Annotated[str, typer.Option(help="native (CUDA runtime only) | cudnn")] = "native",
    precision: Annotated[str, typer.Option(help="fp32 | tf32 | fp16 | bf16 (cudnn: fp32 | tf32)")] = "fp32",
    max_batch: Annotated[int, typer.Option(help="Largest batch the program accepts.")] = 256,
    arch: Annotated[str | None, typer.Option(help="GPU architecture, e.g. sm_90 [default: nvcc's]")] = None,
    build: Annotated[bool, typer.Option(help="Compile it with nvcc.")] = False,
    verify: Annotated[bool, typer.Option(help="Build, run on the GPU and compare with PyTorch.")] = False,
    bench: Annotated[bool, typer.Option(help="Build and time it.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Generate standalone CUDA C++ inference code for a trained Run."""
    info = api.codegen(
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
    show(info, as_json=as_json)


@app.command()
def export(
    run: Annotated[Path, typer.Argument(help="A Run folder.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output file (.onnx or .pt).")],
    format: Annotated[str, typer.Option(help="onnx | torchscript")] = "onnx",
) -> None:
    """Export a Run's model to ONNX or TorchScript (outputs checked against PyTorch)."""
    typer.echo(f"exported: {api.export(run, out, format=format)}")


register_studies(app, bench_app)
register_train_bench(bench_app)


def _click_errors() -> tuple[type[Exception], ...]:
    """Usage-error classes: typer >= 0.20 vendors click as typer._click, older typer uses click itself."""
    found: list[type[Exception]] = []
    try:
        from typer._click.exceptions import ClickException as Vendored

        found.append(Vendored)
    except ImportError:
        pass
    try:
        from click.exceptions import ClickException

        found.append(ClickException)
    except ImportError:
        pass
    return tuple(found)


_CLICK_ERRORS = _click_errors()


def entry() -> None:
    """The `convforge` command (and `python -m convforge`): main(), then the process ends at once.

    Why: after a training run the interpreter's teardown (module finalizers, the CUDA context) took ~0.9 s of a
    14 s folder-fast command on an H200 host, after every file was written and closed. Output is flushed first;
    main() called from Python (tests, notebooks) returns normally.
    """
    main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def main(argv: list[str] | None = None) -> None:
    """Entry point: user errors become one line on stderr and exit code 2."""
    try:
        app(args=argv, standalone_mode=False)
    except ConvforgeError as e:
        typer.echo(f"error: {e}", err=True)
        sys.exit(2)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(130)
    except _CLICK_ERRORS as e:  # bad usage: unknown option, missing argument, bad value
        typer.echo(f"error: {e.format_message()}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("interrupted; resume with `convforge train --resume RUN_DIR`", err=True)
        sys.exit(130)
