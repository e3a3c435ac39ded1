"""The CLI: arguments reach the API, user errors are one line with exit code 2, outputs as documented."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from convforge import cli


def run_cli(args, capsys):
    try:
        cli.main(args)
        code = 0
    except SystemExit as e:
        code = e.code or 0
    out = capsys.readouterr()
    return code, out.out, out.err


def test_train_passes_options_to_the_api(monkeypatch, capsys, tmp_path):
    seen = {}

    class Result:
        test_accuracy = 0.5
        run = type("R", (), {"path": tmp_path})()

    def fake_train(source, **kw):
        seen.update(kw, source=source)
        return Result()

    monkeypatch.setattr(cli.api, "train", fake_train)
    code, out, _ = run_cli(
        [
            "train",
            "mnist",
            "--epochs",
            "3",
            "--solver",
            "sgdm",
            "--lr",
            "0.1",
            "--flip",
            "--split",
            "0.7,0.2,0.1",
            "--device",
            "cpu",
        ],
        capsys,
    )
    assert code == 0
    assert seen["source"] == "mnist" and seen["epochs"] == 3 and seen["solver"] == "sgdm" and seen["lr"] == "0.1"
    assert seen["flip"] is True and seen["split"] == "0.7,0.2,0.1" and seen["batch_size"] is None
    assert out.strip().splitlines()[-1] == "test accuracy: 50.00%"


def test_every_config_field_is_an_option(capsys):
    import dataclasses

    from convforge.engine import TrainConfig

    code, out, _ = run_cli(["train", "--help"], capsys)
    assert code == 0
    for f in dataclasses.fields(TrainConfig):
        if f.name != "source":
            assert "--" + f.name.replace("_", "-") in out, f.name


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "--lr", "-1"], "--lr must be a positive number"),
        (["train", "/no/such/folder"], "no/such/folder"),
        (["train", "--epochs", "0"], "--epochs must be a positive integer"),
        (["train", "--model", "vgg12"], "unknown model 'vgg12'"),
        (["evaluate", "/no/such/run"], "run folder not found"),
        (["predict", "/no/such/run", "x.png"], "run folder not found"),
        (["models", "show", "lenet6"], "unknown model 'lenet6'"),
        (["models", "show", "lenet5", "--input", "1,abc"], "--input must look like C,H,W"),
        (["train", "--no-such-option"], "No such option"),
    ],
)
def test_user_errors_are_one_line_exit_2(args, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(args, capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]
    assert "Traceback" not in err


def test_models_list_and_show(capsys):
    code, out, _ = run_cli(["models", "list"], capsys)
    for name in ("mlp", "digits-cnn", "simple-cnn", "imagenette-cnn", "lenet5", "alexnet", "vgg11", "resnet18"):
        assert name in out
    code, out, _ = run_cli(["models", "show", "mlp", "--input", "1,28,28", "--json"], capsys)
    assert json.loads(out)["params"] == 101_770


def test_evaluate_and_predict_from_the_cli(digits_run, capsys, tmp_path):
    from PIL import Image

    run = str(digits_run.run.path)
    code, out, _ = run_cli(["evaluate", run], capsys)
    assert code == 0 and out.strip().splitlines()[-1].startswith("test accuracy: ")
    img = tmp_path / "seven.png"
    Image.new("L", (8, 8), 0).save(img)
    code, out, _ = run_cli(["predict", run, str(img), "--top-k", "3", "--json"], capsys)
    rows = json.loads(out)
    assert code == 0 and len(rows) == 1 and len(rows[0]["top"]) == 3


def test_python_m_convforge_runs():
    done = subprocess.run([sys.executable, "-m", "convforge", "models", "list"], capture_output=True, text=True)
    assert done.returncode == 0 and "resnet18" in done.stdout
