"""evaluate: metrics against hand-counted values, report files, and evaluation on another folder."""

from __future__ import annotations

import json

import numpy as np
import pytest

import convforge
from convforge.errors import ConvforgeError
from convforge.evaluation.metrics import classification_metrics, confusion_text, topk_accuracy


def test_metrics_match_hand_counts():
    labels = np.array([0, 0, 1, 1, 2, 2])
    probs = np.array([[0.9, 0.1, 0], [0.2, 0.7, 0.1], [0.1, 0.8, 0.1], [0.5, 0.3, 0.2], [0, 0, 1], [0, 0.4, 0.6]])
    m = classification_metrics(labels, probs, ["a", "b", "c"], top_k=2)
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["confusion"] == [[1, 1, 0], [1, 1, 0], [0, 0, 2]]
    assert m["per_class"][0]["precision"] == pytest.approx(0.5) and m["per_class"][2]["recall"] == 1.0
    assert m["top2_accuracy"] == pytest.approx(1.0)
    assert topk_accuracy(labels, probs, 1) == pytest.approx(4 / 6)
    assert "true \\ predicted" in confusion_text(m["confusion"], ["a", "b", "c"])


def test_evaluate_writes_report_and_plots(digits_run):
    result = convforge.evaluate(digits_run.run.path)
    path = digits_run.run.path
    for name in ("report.md", "confusion.png", "confusion.txt", "curves.png", "evaluation.json"):
        assert (path / name).is_file(), name
    saved = json.loads((path / "evaluation.json").read_text())
    assert saved["accuracy"] == result["accuracy"] and sum(map(sum, saved["confusion"])) == saved["images"]
    assert "**accuracy:" in (path / "report.md").read_text()
    assert (path / "confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_evaluate_on_another_folder_maps_classes_by_name(shapes_folder, tmp_path, cache_dir):
    result = convforge.train(
        str(shapes_folder),
        model="digits-cnn",
        epochs=10,
        batch_size=8,
        device="cpu",
        out=str(tmp_path / "run"),
        cache_dir=str(cache_dir),
        progress=False,
        log=lambda s: None,
    )
    other = tmp_path / "other"
    (other / "square").mkdir(parents=True)
    for f in sorted((shapes_folder / "square").iterdir())[:5]:
        (other / "square" / f.name).write_bytes(f.read_bytes())
    m = convforge.evaluate(result.run.path, str(other))
    assert m["images"] == 5 and m["per_class"][1]["support"] == 5
    (other / "triangle").mkdir()
    (shapes_folder / "square" / "000.png").rename(other / "triangle" / "0.png")
    with pytest.raises(ConvforgeError, match="not among the model's classes"):
        convforge.evaluate(result.run.path, str(other))
