"""Real test images for the GPU code-generation tests ($CONVFORGE_TEST_IMAGES), from ../shared/datasets.

    python scripts/make_test_images.py .cgdata     # then carry .cgdata and set CONVFORGE_TEST_IMAGES=.cgdata

Writes uint8 N x C x H x W arrays: mnist.npy (MNIST test set, 1024), rgb32.npy (CIFAR-10 JPEG, 1024),
rgb64.npy and rgb224.npy (Imagenette, 256 and 128, centre-cropped).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from convforge.data import DataConfig, load_data

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"


def take(cfg: DataConfig, n: int) -> np.ndarray:
    splits = load_data(cfg, progress=False)
    return splits.test.images[:n].numpy()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    out = parser.parse_args().out
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "mnist.npy", take(DataConfig(source="mnist", data_dir=str(SHARED / "mnist")), 1024))
    np.save(out / "rgb32.npy", take(DataConfig(source="cifar10", data_dir=str(SHARED)), 1024))
    for size, n in ((64, 256), (224, 128)):
        cfg = DataConfig(source="imagenette", data_dir=str(SHARED), image_size=(size, size), resize="crop")
        np.save(out / f"rgb{size}.npy", take(cfg, n))
    for f in sorted(out.glob("*.npy")):
        print(f, np.load(f).shape)


if __name__ == "__main__":
    main()
