"""Real data on CPU: MNIST (../shared/datasets), Fashion-MNIST (Debian package) when present."""

from __future__ import annotations

from pathlib import Path

import pytest

import convforge

SHARED = Path(__file__).resolve().parents[3] / "shared" / "datasets"

MNIST = SHARED / "mnist"
FASHION = Path("/usr/share/datasets/fashion-mnist")
pytestmark = pytest.mark.integration


@pytest.mark.slow
@pytest.mark.skipif(not (MNIST / "train-images-idx3-ubyte.gz").is_file(), reason="shared MNIST files absent")
def test_mnist_digits_cnn_sgdm_reaches_98_percent_on_cpu(tmp_path):
    result = convforge.train(
        "mnist",
        data_dir=str(MNIST),
        model="digits-cnn",
        solver="sgdm",
        lr=0.01,
        batch_size=128,
        epochs=2,
        schedule="constant",
        device="cpu",
        threads=1,  # a loaded 2-core CI box: one thread avoids oversubscription
        out=str(tmp_path / "run"),
        cache_dir=str(tmp_path / "cache"),
        progress=False,
        log=lambda s: None,
    )
    assert len(result.run.classes) == 10
    assert result.test_accuracy >= 0.98


@pytest.mark.slow
@pytest.mark.skipif(not FASHION.is_dir(), reason="apt-get install dataset-fashion-mnist")
def test_fashion_mnist_mlp_one_epoch(tmp_path):
    result = convforge.train(
        "fashion-mnist",
        model="mlp",
        solver="adam",
        batch_size=32,
        epochs=1,
        schedule="constant",
        device="cpu",
        out=str(tmp_path / "run"),
        cache_dir=str(tmp_path / "cache"),
        progress=False,
        log=lambda s: None,
    )
    assert result.run.classes[0] == "T-shirt/top" or len(result.run.classes) == 10
    assert result.test_accuracy >= 0.82
