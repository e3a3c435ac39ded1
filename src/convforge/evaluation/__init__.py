"""Evaluation of a Run: metrics, confusion matrix, curves and report.md. Reads the Run, not the trainer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from .._io import write_json, write_text
from ..data import DataConfig, ImageSet, load_data
from ..errors import ConvforgeError
from ..inference import batched_logits, probabilities, resolve_device
from ..run import Run
from .metrics import classification_metrics, confusion_text, per_class_text
from .plots import confusion_png, curves_png
from .report import write_report


def _data_config(run: Run, source: str | None, data_dir: str | None) -> DataConfig:
    cfg = run.config_dict()
    pre = run.preprocessing
    common = dict(
        image_size=(pre["height"], pre["width"]),
        channels=pre["channels"],
        resize=pre["resize"],
        cache_dir=cfg.get("cache_dir"),
        download=cfg.get("download", True),
    )
    if source is None:
        return DataConfig(
            source=cfg["source"],
            split=tuple(cfg["split"]),
            seed=cfg["seed"],
            data_dir=data_dir or cfg.get("data_dir"),
            **common,
        )
    return DataConfig(source=source, split=(1.0, 0.0, 0.0), seed=0, data_dir=data_dir, min_classes=1, **common)


def _relabel(data: ImageSet, classes: list[str]) -> ImageSet:
    """Map the data's class indices onto the Run's class list by name."""
    if data.classes == classes:
        return data
    unknown = [c for c in data.classes if c not in classes]
    if unknown:
        raise ConvforgeError(
            f"classes {unknown[:3]} are not among the model's classes {classes[:10]}; "
            "evaluate on data with the same class folders"
        )
    mapping = torch.tensor([classes.index(c) for c in data.classes])
    return ImageSet(data.images, mapping[data.labels], classes)


def evaluation_data(run: Run, source: str | None, data_dir: str | None) -> ImageSet:
    splits = load_data(_data_config(run, source, data_dir), progress=False)
    if source is None or len(splits.test):
        data = splits.test
    else:  # a plain folder: every image in it
        parts = [s for s in (splits.train, splits.val, splits.test) if len(s)]
        data = ImageSet(torch.cat([p.images for p in parts]), torch.cat([p.labels for p in parts]), splits.classes)
    if not len(data):
        raise ConvforgeError(f"no test images in {source or run.config_dict()['source']}; give a SOURCE to evaluate on")
    return _relabel(data, run.classes)


def evaluate_run(
    run_dir: str | Path, source: str | None = None, *, data_dir: str | None = None, top_k: int = 5, device: str = "auto"
) -> dict[str, Any]:
    run = Run.open(run_dir)
    data = evaluation_data(run, source, data_dir)
    dev = resolve_device(device)
    model = run.load_model(dev)
    pre = run.preprocessing
    logits = batched_logits(model, data.images, pre["mean"], pre["std"], device=dev)
    probs = probabilities(logits, run.output).cpu().numpy()
    metrics = classification_metrics(data.labels.numpy(), probs, run.classes, top_k=top_k)
    metrics["source"] = source or run.config_dict().get("source")
    text = "\n\n".join([per_class_text(metrics), confusion_text(metrics["confusion"], run.classes)])
    write_json(run.file("evaluation.json"), metrics)
    write_text(run.file("confusion.txt"), confusion_text(metrics["confusion"], run.classes) + "\n")
    confusion_png(metrics["confusion"], run.classes, run.file("confusion.png"))
    history = _history(run)
    if history:
        curves_png(history, run.file("curves.png"))
    write_report(run, metrics, history)
    return {**metrics, "text": text}


def _history(run: Run) -> list[dict[str, Any]]:
    path = run.file("metrics.json")
    return json.loads(path.read_text()) if path.is_file() else []


__all__ = ["classification_metrics", "evaluate_run"]
