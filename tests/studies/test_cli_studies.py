"""The study commands through typer: registered names, thin forwarding, user errors as ConvforgeError."""

from __future__ import annotations

import typer
from typer.testing import CliRunner

from convforge.cli_studies import register
from convforge.errors import ConvforgeError


def _apps() -> typer.Typer:
    app, bench = typer.Typer(), typer.Typer()
    app.add_typer(bench, name="bench")
    register(app, bench)
    return app


def test_commands_are_registered():
    app = _apps()
    result = CliRunner().invoke(app, ["--help"])
    for name in ("compare-solvers", "lr-find", "tune", "baselines", "faces", "bench"):
        assert name in result.output
    assert "conv" in CliRunner().invoke(app, ["bench", "--help"]).output
    assert "--crop-to" in CliRunner().invoke(app, ["faces", "detect", "--help"]).output


def test_lr_find_prints_the_suggestion(tmp_path, cache_dir):
    result = CliRunner().invoke(
        _apps(),
        ["lr-find", "--steps", "20", "--device", "cpu", "--cache-dir", str(cache_dir), "--out", str(tmp_path / "lr")],
    )
    assert result.exit_code == 0, result.output
    assert "suggested lr:" in result.output and (tmp_path / "lr" / "lr_find.png").is_file()


def test_bench_conv_small_json(tmp_path):
    result = CliRunner().invoke(
        _apps(),
        [
            "bench",
            "conv",
            "--small",
            "--device",
            "cpu",
            "--batches",
            "1",
            "--dtypes",
            "fp32",
            "--impls",
            "im2col",
            "--json",
            "--out",
            str(tmp_path / "c"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert '"fastest": "im2col"' in result.output


def test_user_errors_surface_as_convforge_errors(tmp_path):
    result = CliRunner().invoke(_apps(), ["faces", "detect", str(tmp_path / "none.png")])
    assert isinstance(result.exception, ConvforgeError)
    result = CliRunner().invoke(_apps(), ["compare-solvers", "--solvers", "sgdx", "--out", str(tmp_path / "s")])
    assert isinstance(result.exception, ConvforgeError) and "sgdx" in str(result.exception)


def test_compare_solvers_cli_default_lists_every_engine_solver():
    from convforge.cli_studies import ALL_SOLVERS
    from convforge.studies.solvers import SOLVER_NAMES

    assert ALL_SOLVERS.split(",") == list(SOLVER_NAMES) and "muon" in SOLVER_NAMES
