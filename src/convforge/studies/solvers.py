"""compare-solvers: sgd, sgdm, nesterov, adam, adamw, rmsprop, muon on the same model, data, seed and budget.

Each solver starts from the same initial weights (same seed) at its usual default learning rate; `sweep=3`
also tries the default / sqrt(10) and x sqrt(10) and keeps the best by validation accuracy.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..engine.solvers import DEFAULT_LR, SOLVERS
from ..errors import ConfigError
from ._common import StudyResult, plt, quiet_log, render, save_figure, study_dir, write_report

SOLVER_NAMES = tuple(DEFAULT_LR)  # the engine's solvers, in the reports' order: sgd, sgdm, nesterov, adam, ...
SOLVER_WEIGHT_DECAY = {"adamw": 0.01}  # PyTorch's AdamW default; the others default to 0
UNBOUNDED_EPOCHS = 100_000  # with only a time budget the budget stops the run
COLUMNS = [
    ("solver", "solver", ""),
    ("lr", "lr", ".3g"),
    ("epochs", "epochs", "d"),
    ("train_loss", "train loss", ".4f"),
    ("val_loss", "val loss", ".4f"),
    ("val_acc", "val acc", ".2%"),
    ("test_acc", "test acc", ".2%"),
    ("train_time_s", "train s", ".2f"),
    ("images_per_s", "img/s", ",.0f"),
]


def sweep_lrs(default: float, points: int) -> list[float]:
    """`points` learning rates spaced half a decade apart, centred on `default` (1 point: the default)."""
    if points < 1:
        raise ConfigError(f"--sweep must be >= 1 (number of learning rates per solver), not {points}")
    half = (points - 1) / 2
    return [float(f"{default * 10 ** ((k - half) / 2):.3g}") for k in range(points)]


def _budget(epochs: int | None, time_budget_s: float | None, options: dict[str, Any]) -> dict[str, Any]:
    if time_budget_s is not None and time_budget_s <= 0:
        raise ConfigError(f"--time-budget must be a positive number of seconds, not {time_budget_s}")
    if time_budget_s and epochs is None:
        options.setdefault("schedule", "constant")  # a cosine over 100k epochs would be flat anyway
        return {"epochs": UNBOUNDED_EPOCHS, "time_budget_s": time_budget_s}
    return {"epochs": epochs or 10, "time_budget_s": time_budget_s or 0.0}


def _row(solver: str, lr: float, result) -> dict[str, Any]:
    last = result.history[-1] if result.history else {}
    train_time = sum(r["time_s"] for r in result.history)
    images = sum(r["time_s"] * r["images_per_s"] for r in result.history)
    return {
        "solver": solver,
        "lr": lr,
        "epochs": len(result.history),
        "train_loss": last.get("train_loss"),
        "val_loss": last.get("val_loss"),
        "val_acc": last.get("val_acc"),
        "test_acc": result.test_accuracy,
        "train_time_s": round(train_time, 3),
        "total_time_s": round(result.time_s, 3),
        "images_per_s": round(images / train_time, 1) if train_time else None,
        "run": str(result.run.path),
        "history": result.history,
    }


def _score(row: dict[str, Any]) -> tuple[float, float]:
    """Higher is better: validation accuracy, then lower validation (or training) loss."""
    acc = row["val_acc"] if row["val_acc"] is not None else (row["test_acc"] or 0.0)
    loss = row["val_loss"] if row["val_loss"] is not None else row["train_loss"]
    return acc, -(loss if loss is not None else float("inf"))


def compare_solvers(
    source: str = "digits",
    *,
    solvers: Sequence[str] = SOLVER_NAMES,
    epochs: int | None = None,
    time_budget_s: float | None = None,
    sweep: int = 1,
    out: str | Path | None = None,
    log: Callable[[str], None] = print,
    **options: Any,
) -> StudyResult:
    """Train once per solver (x `sweep` learning rates) with everything else equal; table + loss curves."""
    from ..api import train

    for name in solvers:
        SOLVERS.get(name)  # unknown names fail before any training
    budget = _budget(epochs, time_budget_s, options)
    folder = study_dir("compare-solvers", out)
    best, trials = [], []
    for solver in solvers:
        rows = []
        for lr in sweep_lrs(DEFAULT_LR[solver], sweep):
            log(f"{solver} lr={lr:g} ...")
            extra = {} if "weight_decay" in options else {"weight_decay": SOLVER_WEIGHT_DECAY.get(solver, 0.0)}
            result = train(
                source,
                solver=solver,
                lr=lr,
                **extra,
                out=str(folder / "runs" / f"{solver}-lr{lr:g}"),
                progress=False,
                log=quiet_log,
                **budget,
                **options,
            )
            rows.append(_row(solver, lr, result))
        trials += rows
        best.append(max(rows, key=_score))
    text, md = render(best, COLUMNS)
    files = {"plot": _plot(best, folder / "curves.png")}
    notes = [
        f"data: {source}; model: {options.get('model', 'digits-cnn')}; budget: "
        + (f"{time_budget_s:g} s" if time_budget_s else f"{budget['epochs']} epochs")
        + (f"; {sweep} learning rates per solver, best by validation accuracy" if sweep > 1 else ""),
        "adamw uses weight decay 0.01 (PyTorch's default) unless --weight-decay is given; the others 0",
        "train s: time in training steps (no validation); each solver starts from the same initial weights",
    ]
    table_rows = [{k: v for k, v in r.items() if k != "history"} for r in best]
    files.update(
        write_report(
            folder,
            "Solver comparison",
            md,
            table_rows,
            {"source": source, "budget": budget, "sweep": sweep, "options": options, "trials": trials},
            notes,
        )
    )
    return StudyResult("compare-solvers", folder, table_rows, text, md, files)


def _plot(rows: list[dict[str, Any]], path: Path) -> Path:
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    for row in rows:
        epochs = [h["epoch"] for h in row["history"]]
        line = ax_loss.plot(epochs, [h["train_loss"] for h in row["history"]], label=f"{row['solver']} train")[0]
        val = [h.get("val_loss") for h in row["history"]]
        if any(v is not None for v in val):
            ax_loss.plot(epochs, val, linestyle="--", color=line.get_color(), label=f"{row['solver']} val")
            ax_acc.plot(epochs, [h.get("val_acc") for h in row["history"]], color=line.get_color(), label=row["solver"])
    ax_loss.set_yscale("log")
    ax_loss.set(xlabel="epoch", ylabel="loss (solid: train, dashed: validation)")
    ax_acc.set(xlabel="epoch", ylabel="validation accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
    ax_acc.legend(fontsize=8)
    fig.suptitle("solvers on the same model, data and budget")
    return save_figure(fig, path)
