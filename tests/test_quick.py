"""The public API in seconds: every entry point is a function (no subpackage shadows it) and they chain."""

from __future__ import annotations

import importlib

import convforge

API = ["train", "evaluate", "predict", "load", "codegen", "export", "inspect_data", "list_models", "show_model"]


def test_api_names_stay_functions_after_importing_every_subpackage():
    for name in (
        "convforge.evaluation",
        "convforge.predictor",
        "convforge.cudagen",
        "convforge.cudagen.plan",
        "convforge.cudagen.export",
        "convforge.studies",
        "convforge.bench",
        "convforge.engine",
    ):
        importlib.import_module(name)
    for name in API:
        assert callable(getattr(convforge, name)) and getattr(convforge, name).__module__ == "convforge.api", name


def test_train_evaluate_predict_codegen_export_chain(digits_run, tmp_path):
    run = digits_run.run.path
    phases = digits_run.run.meta["phases_s"]  # where the run's time went, stage by stage
    assert list(phases) == ["data", "warmup_wait", "setup", "epochs", "test_and_save"]
    assert all(s >= 0 for s in phases.values()) and phases["epochs"] > 0
    assert convforge.evaluate(run)["accuracy"] > 0.9
    from convforge.data import DataConfig, load_data

    images = load_data(DataConfig(source="digits"), progress=False).test.images[:4]
    probs = convforge.load(run, device="cpu").probabilities(images)
    assert probs.shape == (4, 10)
    info = convforge.codegen(run, tmp_path / "cuda")
    assert (tmp_path / "cuda" / "network.cu").is_file() and info["backend"] == "native"
    onnx_path = convforge.export(run, tmp_path / "model.onnx")
    assert onnx_path.stat().st_size > 1000
    assert [m["name"] for m in convforge.list_models()][:3] == ["alexnet", "cifar10-fast", "digits-cnn"]
