"""baselines on the CNN's split and face detection plumbing (and one real face: skimage's astronaut)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from convforge.errors import ConfigError, ConvforgeError, DataError
from convforge.studies.baselines import baselines


def test_baselines_on_digits_beside_the_cnn(tmp_path, digits_run):
    out = tmp_path / "bl"
    r = baselines(run=digits_run.run.path, out=out, log=lambda s: None)
    accs = {row["method"]: row["test_acc"] for row in r.rows}
    assert set(accs) == {"logreg", "linear-svm", "rbf-svm", "knn", "random-forest", "hog-linear-svm", "cnn (run)"}
    assert accs["hog-linear-svm"] >= 0.90
    assert all(acc >= 0.85 for acc in accs.values())
    assert accs["cnn (run)"] == pytest.approx(digits_run.test_accuracy)
    meta = json.loads((digits_run.run.path / "meta.json").read_text())
    n_train = meta["data"]["counts"]["train"] if isinstance(meta["data"].get("counts"), dict) else None
    if isinstance(n_train, int):
        assert r.rows[0]["train_images"] == n_train  # the same split as the CNN
    assert (out / "baselines.png").stat().st_size > 0 and "hog-linear-svm" in (out / "report.md").read_text()


def test_baselines_errors(tmp_path, cache_dir):
    with pytest.raises(ConfigError, match="unknown baseline 'svm'"):
        baselines(methods=("svm",), out=tmp_path / "a")
    with pytest.raises(ConvforgeError, match="run folder not found"):
        baselines(run=tmp_path / "nope", out=tmp_path / "b")


cv2 = pytest.importorskip("cv2")
needs_cascades = pytest.mark.skipif(not hasattr(cv2, "CascadeClassifier"), reason="OpenCV 5 has no Haar cascades")


@needs_cascades
def test_faces_detect_astronaut_blank_and_crops(tmp_path):
    from skimage.data import astronaut

    from convforge.studies.faces import detect

    Image.fromarray(astronaut()).save(tmp_path / "astronaut.png")
    Image.fromarray(np.full((120, 160, 3), 127, np.uint8)).save(tmp_path / "blank.png")
    r = detect(
        [tmp_path / "astronaut.png", tmp_path / "blank.png"],
        out=tmp_path / "study",
        crop_to=tmp_path / "crops",
        crop_size=64,
    )
    faces = {Path(row["image"]).name: row["faces"] for row in r.rows}
    assert faces["astronaut.png"] >= 1 and faces["blank.png"] == 0
    crops = sorted((tmp_path / "crops" / "face").glob("*.png"))
    assert len(crops) == faces["astronaut.png"] and Image.open(crops[0]).size == (64, 64)
    assert len(list((tmp_path / "study" / "annotated").glob("*.png"))) == 2


@needs_cascades
def test_faces_errors(tmp_path):
    from convforge.studies.faces import detect

    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    with pytest.raises(DataError, match="cannot read image .*bad.jpg"):
        detect([bad], out=tmp_path / "s")
    with pytest.raises(DataError, match="image not found"):
        detect([tmp_path / "missing.png"], out=tmp_path / "s")
    with pytest.raises(DataError, match="no images found"):
        (tmp_path / "empty").mkdir()
        detect([tmp_path / "empty"], out=tmp_path / "s")
    with pytest.raises(ConfigError, match="unknown cascade"):
        Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(tmp_path / "z.png")
        detect([tmp_path / "z.png"], cascade="cat", out=tmp_path / "s")
