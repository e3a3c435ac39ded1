"""The core workflow on a GPU: train (bf16 autocast), evaluate and predict on cuda (run with -m gpu)."""

from __future__ import annotations

import pytest
import torch

import convforge

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def cuda_run(tmp_path_factory):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    out = tmp_path_factory.mktemp("gpu") / "digits"
    return convforge.train("digits", epochs=20, device="cuda", out=str(out), progress=False, log=lambda s: None)


def test_train_on_cuda_reaches_cpu_accuracy(cuda_run):
    assert cuda_run.run.meta["device"].startswith("cuda")
    assert cuda_run.test_accuracy >= 0.95


def test_predict_on_cuda_equals_cpu(cuda_run):
    from convforge.data import DataConfig, load_data

    images = load_data(DataConfig(source="digits"), progress=False).test.images
    on_gpu = convforge.load(cuda_run.run.path, device="cuda").probabilities(images)
    on_cpu = convforge.load(cuda_run.run.path, device="cpu").probabilities(images)
    # cuDNN convolutions run in TF32 on Hopper by default: ~1e-3 relative differences, same classes
    assert torch.allclose(on_gpu, on_cpu, atol=2e-3)
    assert (on_gpu.argmax(1) == on_cpu.argmax(1)).float().mean() >= 0.99
    assert convforge.evaluate(cuda_run.run.path)["accuracy"] == pytest.approx(cuda_run.test_accuracy, abs=0.02)
