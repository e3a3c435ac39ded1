"""predict: preprocessing identical to training, top-k, folders, CSV/JSON, and unreadable images."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import convforge
from convforge.errors import ConvforgeError


def test_predict_matches_the_model_on_test_images(digits_run, tmp_path):
    """Write test images to PNG, predict from files: same classes as the model on the decoded tensor."""
    from convforge.data import DataConfig, load_data

    splits = load_data(DataConfig(source="digits", seed=0), progress=False)
    images = splits.test.images[:20]
    paths = []
    for i, img in enumerate(images):
        p = tmp_path / f"{i}.png"
        Image.fromarray(img[0].numpy()).save(p)
        paths.append(p)
    predictor = convforge.load(digits_run.run.path, device="cpu")
    rows = predictor.predict(paths, top_k=3)
    direct = predictor.probabilities(images).argmax(1)
    assert [r["class"] for r in rows] == [predictor.classes[i] for i in direct.tolist()]
    assert all(abs(sum(p for _, p in r["top"]) - 1) < 1.0 for r in rows)
    assert all(r["top"][0][1] >= r["top"][1][1] >= r["top"][2][1] for r in rows)
    acc = np.mean([r["class"] == splits.classes[y] for r, y in zip(rows, splits.test.labels[:20].tolist())])
    assert acc >= 0.8


def test_predict_folder_csv_and_errors(digits_run, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        Image.new("RGB", (20, 30), (i * 80, 0, 0)).save(folder / f"{i}.jpg")
    rows = convforge.predict(digits_run.run.path, [folder], top_k=2, csv=tmp_path / "p.csv", device="cpu")
    assert len(rows) == 3
    assert (tmp_path / "p.csv").read_text().splitlines()[0] == "path,class1,probability1,class2,probability2"
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    with pytest.raises(ConvforgeError, match="bad.png"):
        convforge.predict(digits_run.run.path, [bad], device="cpu")
    with pytest.raises(ConvforgeError, match="image not found"):
        convforge.predict(digits_run.run.path, [tmp_path / "missing.png"], device="cpu")


def test_run_folder_problems_are_clear(digits_run, tmp_path):
    import json
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(digits_run.run.path, copy)
    meta = json.loads((copy / "meta.json").read_text())
    (copy / "meta.json").write_text(json.dumps({**meta, "format_version": 99}))
    with pytest.raises(ConvforgeError, match="written by a newer convforge"):
        convforge.load(copy)
    (copy / "meta.json").write_text(json.dumps(meta))
    (copy / "model.safetensors").write_bytes(b"\x80\x04pickle-not-safetensors")
    with pytest.raises(ConvforgeError, match="not a valid safetensors file"):
        convforge.load(copy)
    (copy / "model.safetensors").unlink()
    with pytest.raises(ConvforgeError, match="missing model.safetensors"):
        convforge.load(copy)
    assert torch.__version__
