"""Training end to end on real (digits) and generated data: accuracy, Run contents, resume, transfer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import convforge
from convforge.engine import TrainConfig
from convforge.errors import ConfigError, ConvforgeError
from convforge.run import Run


def quiet(**kw):
    return dict(progress=False, log=lambda s: None, device="cpu", **kw)


def test_digits_run_is_complete_and_accurate(digits_run):
    run = digits_run.run
    for name in (
        "meta.json",
        "config.yaml",
        "spec.yaml",
        "model.safetensors",
        "metrics.csv",
        "metrics.json",
        "checkpoints/last.safetensors",
    ):
        assert (run.path / name).is_file(), name
    assert digits_run.test_accuracy >= 0.93
    meta = json.loads((run.path / "meta.json").read_text())
    assert meta["classes"] == [str(i) for i in range(10)]
    assert meta["preprocessing"]["channels"] == 1 and meta["preprocessing"]["height"] == 8
    assert meta["data"]["split"] is not None
    assert len(digits_run.history) == 6
    assert digits_run.history[-1]["train_acc"] > digits_run.history[0]["train_acc"]
    # the saved config repeats the run
    cfg = convforge._config.load_yaml(TrainConfig, run.path / "config.yaml")
    assert cfg.epochs == 6 and cfg.source == "digits"


def test_saved_weights_reproduce_the_reported_accuracy(digits_run):
    from convforge.evaluation import evaluate_run

    result = evaluate_run(digits_run.run.path, device="cpu")
    assert result["accuracy"] == pytest.approx(digits_run.test_accuracy, abs=1e-6)


def test_same_seed_same_weights(tmp_path, cache_dir):
    kw = quiet(epochs=2, cache_dir=str(cache_dir), deterministic=True)
    a = convforge.train("digits", out=str(tmp_path / "a"), **kw)
    b = convforge.train("digits", out=str(tmp_path / "b"), **kw)
    sa, sb = a.run.state_dict(), b.run.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize(
    "extra",
    [
        {"shift": 0.1},
        {"flip_mode": "alternate", "lookahead": 2, "schedule": "triangle"},
        {"model": "mnist-fast", "progressive_epochs": 3, "progressive_size": 6},
    ],
    ids=["shift", "alternate-flip-lookahead", "progressive"],
)  # lookahead: killed after epoch 2 of 4, with its average running (it starts after 30% of the steps); progressive:
# killed inside the small epochs, resumed into the switch to full size
def test_resume_continues_exactly(tmp_path, cache_dir, extra):
    kw = quiet(cache_dir=str(cache_dir), flip=True, solver="sgdm", schedule="onecycle")
    kw.update(extra)
    straight = convforge.train("digits", epochs=4, out=str(tmp_path / "straight"), **kw)
    killed = _train_and_kill_after(tmp_path / "killed", 2, kw)
    resumed = convforge.train(resume=killed, progress=False, log=lambda s: None)
    assert len(resumed.history) == 4
    s1, s2 = straight.run.state_dict(), resumed.run.state_dict()
    assert all(torch.allclose(s1[k].float(), s2[k].float(), atol=1e-6) for k in s1)
    assert resumed.test_accuracy == pytest.approx(straight.test_accuracy)


def _train_and_kill_after(out: Path, epochs_done: int, kw) -> Path:
    """Run the 4-epoch config but stop it (as a kill would) right after `epochs_done` checkpoints."""
    from convforge.engine import loop

    original = loop.write_metrics

    def kill(run, history):
        original(run, history)
        if len(history) == epochs_done:
            raise KeyboardInterrupt

    loop.write_metrics = kill
    try:
        with pytest.raises(KeyboardInterrupt):
            convforge.train("digits", epochs=4, out=str(out), **kw)
    finally:
        loop.write_metrics = original
    assert not (out / "model.safetensors").exists()
    with pytest.raises(ConvforgeError, match="resume it with"):
        Run.open(out)
    return out


def test_resume_refuses_changed_options(tmp_path, cache_dir):
    out = tmp_path / "r"
    convforge.train("digits", epochs=1, out=str(out), **quiet(cache_dir=str(cache_dir)))
    with pytest.raises(ConvforgeError, match="--lr cannot change"):
        convforge.train(resume=out, lr=0.5, progress=False, log=lambda s: None)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"lr": 0}, "--lr must be a positive number"),
        ({"lr": -1}, "--lr must be a positive number"),
        ({"epochs": 0}, "--epochs must be a positive integer"),
        ({"batch_size": -3}, "--batch-size must be a positive integer"),
        ({"solver": "adamm"}, "unknown solver 'adamm'; did you mean 'adam'"),
        ({"schedule": "cosin"}, "unknown schedule 'cosin'"),
        ({"model": "resnet17"}, "unknown model 'resnet17'"),
        ({"balance": "oversample"}, "--balance must be one of"),
        ({"freeze": True}, "--freeze needs --init"),
    ],
)
def test_bad_options_are_config_errors(tmp_path, options, message):
    with pytest.raises(ConvforgeError, match=message):
        convforge.train("digits", out=str(tmp_path / "x"), **quiet(**options))


def test_unknown_config_key_names_the_key(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("epochs: 3\nlearning_rate: 0.1\n")
    with pytest.raises(ConfigError, match="unknown option 'learning_rate'"):
        convforge.train(config=cfg)
    cfg.write_text("epochs: [3\n")
    with pytest.raises(ConvforgeError, match="invalid YAML"):
        convforge.train(config=cfg)
    cfg.write_text("epochs: three\n")
    with pytest.raises(ConfigError, match="'epochs' must be an integer"):
        convforge.train(config=cfg)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_cuda_without_gpu_is_a_clear_error(tmp_path):
    with pytest.raises(ConvforgeError, match="no CUDA GPU is available; use --device cpu"):
        convforge.train("digits", out=str(tmp_path / "x"), progress=False, device="cuda")


def test_binary_folder_with_sigmoid_head(shapes_folder, tmp_path, cache_dir):
    result = convforge.train(
        str(shapes_folder),
        model="simple-cnn",
        epochs=8,
        batch_size=8,
        out=str(tmp_path / "bin"),
        **quiet(cache_dir=str(cache_dir), lr=3e-3),
    )
    assert result.run.output == "sigmoid"
    assert result.run.spec.layers[-1]["type"] == "sigmoid"
    assert result.history[-1]["train_acc"] >= 0.9


@pytest.mark.parametrize("balance", ["weights", "sampler"])
def test_balance_options_train(tmp_path, cache_dir, balance):
    result = convforge.train(
        "digits", epochs=2, balance=balance, out=str(tmp_path / balance), **quiet(cache_dir=str(cache_dir))
    )
    assert result.test_accuracy > 0.5


def test_transfer_init_and_freeze(digits_run, tmp_path, cache_dir):
    result = convforge.train(
        "digits",
        epochs=1,
        init=str(digits_run.run.path),
        freeze=True,
        out=str(tmp_path / "t"),
        **quiet(cache_dir=str(cache_dir)),
    )
    before, after = digits_run.run.state_dict(), result.run.state_dict()
    head = [k for k in after if k.startswith(_head(after))]
    frozen = [k for k in after if k not in head]
    assert frozen and head
    assert all(torch.equal(before[k], after[k]) for k in frozen)
    assert not all(torch.equal(before[k], after[k]) for k in head)


def _head(state) -> str:
    dense = [k for k in state if k.endswith(".weight") and state[k].dim() == 2]
    return dense[-1].rsplit(".", 1)[0] + "."


def test_early_stopping_stops_and_keeps_best(tmp_path, cache_dir):
    result = convforge.train(
        "digits",
        epochs=40,
        early_stopping=1,
        lr=0.5,
        solver="sgd",
        schedule="constant",
        out=str(tmp_path / "es"),
        **quiet(cache_dir=str(cache_dir)),
    )
    assert len(result.history) < 40
