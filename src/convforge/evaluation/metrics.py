"""Classification metrics from labels and probabilities (scikit-learn does the counting)."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support


def topk_accuracy(labels: np.ndarray, probs: np.ndarray, k: int) -> float:
    k = min(k, probs.shape[1])
    top = np.argsort(-probs, axis=1)[:, :k]
    return float((top == labels[:, None]).any(axis=1).mean()) if len(labels) else 0.0


def classification_metrics(labels: np.ndarray, probs: np.ndarray, classes: list[str], top_k: int = 5) -> dict[str, Any]:
    """Accuracy, top-k, per-class precision/recall/F1/support, macro averages and the confusion matrix."""
    preds = probs.argmax(1)
    ids = list(range(len(classes)))
    precision, recall, f1, support = precision_recall_fscore_support(labels, preds, labels=ids, zero_division=0)
    per_class = [
        {"class": c, "precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
        for c, p, r, f, s in zip(classes, precision, recall, f1, support)
    ]
    result = {
        "images": int(len(labels)),
        "accuracy": float((preds == labels).mean()) if len(labels) else 0.0,
        "macro_precision": float(precision.mean()),
        "macro_recall": float(recall.mean()),
        "macro_f1": float(f1.mean()),
        "per_class": per_class,
        "confusion": confusion_matrix(labels, preds, labels=ids).tolist(),
    }
    if len(classes) > 2 and top_k > 1:
        result[f"top{min(top_k, len(classes))}_accuracy"] = topk_accuracy(labels, probs, top_k)
    return result


def confusion_text(confusion: list[list[int]], classes: list[str]) -> str:
    """The confusion matrix as an aligned text table (rows: true class, columns: predicted)."""
    names = [c[:12] for c in classes]
    width = max(5, *(len(n) for n in names), *(len(str(v)) for row in confusion for v in row))
    header = " " * (width + 2) + " ".join(f"{n:>{width}}" for n in names)
    rows = [f"{n:>{width}}  " + " ".join(f"{v:>{width}}" for v in row) for n, row in zip(names, confusion)]
    return "true \\ predicted\n" + "\n".join([header, *rows])


def per_class_text(metrics: dict[str, Any]) -> str:
    lines = [f"{'class':<20} {'precision':>9} {'recall':>7} {'f1':>7} {'support':>8}"]
    for row in metrics["per_class"]:
        lines.append(
            f"{row['class'][:20]:<20} {row['precision']:>9.3f} {row['recall']:>7.3f} {row['f1']:>7.3f} "
            f"{row['support']:>8}"
        )
    return "\n".join(lines)
