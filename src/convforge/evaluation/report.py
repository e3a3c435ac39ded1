"""report.md: what was trained on what, how it went, and how well it does."""

from __future__ import annotations

from typing import Any

from .._io import write_text
from ..run import Run
from .metrics import confusion_text, per_class_text


def write_report(run: Run, metrics: dict[str, Any], history: list[dict[str, Any]]) -> None:
    meta, cfg = run.meta, run.config_dict()
    pre = meta["preprocessing"]
    lines = [
        f"# convforge report: {run.path.name}",
        "",
        f"- data: `{metrics.get('source')}`, {len(run.classes)} classes, input {pre['channels']}x{pre['height']}x"
        f"{pre['width']} ({pre['resize']})",
        f"- model: `{cfg.get('model')}` ({run.spec.param_count:,} parameters), solver {cfg.get('solver')}, "
        f"lr {cfg.get('lr') or 'default'}, schedule {cfg.get('schedule')}, batch {cfg.get('batch_size')}, "
        f"epochs {meta.get('epochs_done', cfg.get('epochs'))}",
        f"- device: {meta.get('device', '?')}, torch {meta.get('torch_version', '?')}, "
        f"training time {meta.get('train_time_s', '?')} s, seed {cfg.get('seed')}",
        "",
        "## Results",
        "",
        f"- test images: {metrics['images']}",
        f"- **accuracy: {metrics['accuracy']:.2%}**",
    ]
    lines += [f"- {k.replace('_', ' ')}: {v:.2%}" for k, v in metrics.items() if k.startswith("top")]
    lines += [f"- macro F1: {metrics['macro_f1']:.3f}", "", "## Per class", "", "```", per_class_text(metrics), "```"]
    lines += [
        "",
        "## Confusion matrix",
        "",
        "![confusion](confusion.png)",
        "",
        "```",
        confusion_text(metrics["confusion"], run.classes),
        "```",
    ]
    if history:
        lines += [
            "",
            "## Training",
            "",
            "![curves](curves.png)",
            "",
            "| epoch | loss | acc | val loss | val acc |",
            "|---|---|---|---|---|",
        ]
        for row in history:
            val_loss = f"{row['val_loss']:.4f}" if row.get("val_loss") is not None else "-"
            val_acc = f"{row['val_acc']:.2%}" if row.get("val_acc") is not None else "-"
            lines.append(
                f"| {row['epoch']} | {row['train_loss']:.4f} | {row['train_acc']:.2%} | {val_loss} | {val_acc} |"
            )
    write_text(run.file("report.md"), "\n".join(lines) + "\n")
