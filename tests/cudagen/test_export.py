"""ONNX / TorchScript export of a Run, checked against PyTorch (onnxruntime on the CPU)."""

from __future__ import annotations

import pytest

from convforge.cudagen._random_run import make_run
from convforge.cudagen.export import export
from convforge.errors import ConvforgeError


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
@pytest.mark.parametrize("model", ["digits-cnn", "cifar10-fast"])  # cifar10-fast: GELU, global max pool, fixed BN scale
def test_export(tmp_path, fmt, model):
    pytest.importorskip("onnxruntime")
    import convforge.recipes  # noqa: F401  (registers the fast recipes' networks)

    shape = {"digits-cnn": (1, 28, 28), "cifar10-fast": (3, 32, 32)}[model]
    run = make_run(tmp_path / "run", model, in_shape=shape, num_classes=10)
    path = export(run, tmp_path / "model", fmt)
    assert path.is_file() and path.stat().st_size > 1000


def test_unknown_format(tmp_path):
    with pytest.raises(ConvforgeError, match="format"):
        export(tmp_path, tmp_path / "m", "tflite")
