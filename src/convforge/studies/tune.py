"""tune: hyperparameter search with Optuna (TPE sampler, median pruning), resumable in SQLite.

Each trial is one `train` run to a Run folder under `<out>/trials/`; it reports validation accuracy after every
epoch so the median pruner stops trials that fall below the median of earlier trials at the same epoch. Re-running
with the same `--storage` (default `<out>/study.db`) and `--study-name` adds trials to the same study.
`best.yaml` is a TrainConfig that `convforge train --config best.yaml` repeats.
"""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .._config import merge, to_dict
from .._io import write_yaml
from ..engine.config import TrainConfig
from ..errors import ConfigError, ConvforgeError
from ._common import StudyResult, plt, quiet_log, render, save_figure, study_dir, write_report
from .tune_space import Param, load_space, parse_space, split_values

NEEDS_VAL = "tune needs a validation split; give --split with a val fraction, e.g. 0.8,0.1,0.1"


def _optuna():
    try:
        import optuna
    except ImportError:
        raise ConvforgeError("tune needs optuna; install it with `pip install 'convforge[studies]'`") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def storage_url(storage: str | Path | None, folder: Path) -> str:
    """A database URL; a plain path (or None: <out>/study.db) becomes SQLite."""
    if storage is not None and "://" in str(storage):
        return str(storage)
    path = Path(storage) if storage is not None else folder / "study.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path.resolve()}"


def _model_file(base: TrainConfig, model_opts: dict[str, Any], path: Path, in_shape) -> str:
    """A spec file of the zoo model with the trial's options (TrainConfig names a model, not its options)."""
    from ..models import zoo_spec

    raw = zoo_spec(base.model, in_shape, 2, **model_opts)  # 'classes' stays symbolic in zoo specs
    raw.setdefault(
        "name",
        f"{base.model}-"
        + "-".join(f"{k}{v:.3g}" if isinstance(v, float) else f"{k}{v}" for k, v in model_opts.items()),
    )
    write_yaml(path, raw)
    return str(path.resolve())


class Objective:
    """One trial: suggest, train with pruning on validation accuracy, remember the resolved config."""

    def __init__(self, optuna, base: TrainConfig, params: list[Param], folder: Path, log: Callable[[str], None]):
        self.optuna, self.base, self.params, self.folder, self.log = optuna, base, params, folder, log
        self.in_shape = None

    def _shape(self):
        if self.in_shape is None:
            from ..data import load_data
            from ..engine.loop import cfg_to_data

            self.in_shape = tuple(load_data(cfg_to_data(self.base), progress=False).train.images.shape[1:])
        return self.in_shape

    def __call__(self, trial) -> float:
        values = {p.name: p.suggest(trial) for p in self.params}
        overrides, model_opts = split_values(values, self.base.model)
        trial_dir = self.folder / "trials" / f"trial-{trial.number:04d}"
        if model_opts:
            overrides["model"] = _model_file(self.base, model_opts, trial_dir / "model.yaml", self._shape())
        cfg = merge(self.base, **overrides, out=str(trial_dir / "run"))
        trial.set_user_attr("config", to_dict(merge(cfg, out=None)) | {"out": None})

        def report(row: dict[str, Any]) -> None:
            if row.get("val_acc") is None:
                raise ConvforgeError(NEEDS_VAL)
            trial.report(row["val_acc"], row["epoch"])
            if trial.should_prune():
                raise self.optuna.TrialPruned(f"pruned after epoch {row['epoch']}")

        from ..engine.loop import train

        result = train(cfg, progress=False, log=quiet_log, on_epoch=report)
        trial.set_user_attr("test_acc", result.test_accuracy)
        trial.set_user_attr("time_s", round(result.time_s, 3))
        trial.set_user_attr("run", str(result.run.path))
        return result.history[-1]["val_acc"]


def tune(
    source: str = "digits",
    *,
    space: str | Path | dict | None = None,
    trials: int = 20,
    epochs: int = 5,
    storage: str | Path | None = None,
    study_name: str = "convforge-tune",
    seed: int = 0,
    timeout_s: float | None = None,
    out: str | Path | None = None,
    log: Callable[[str], None] = print,
    **options: Any,
) -> StudyResult:
    """Search `trials` more configurations; table of the best, best.yaml, history and importance plots."""
    optuna = _optuna()
    if trials < 1:
        raise ConfigError(f"--trials must be >= 1, not {trials}")
    base = merge(TrainConfig(), source=source, epochs=epochs, **options)
    if len(base.split) < 2 or base.split[1] <= 0:
        raise ConfigError(NEEDS_VAL)
    params = parse_space(space, base.model) if isinstance(space, dict) else load_space(space, base.model)
    folder = study_dir("tune", out)
    study = optuna.create_study(
        study_name=study_name,
        storage=storage_url(storage, folder),
        direction="maximize",
        load_if_exists=True,
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=1),
    )
    study.sampler = optuna.samplers.TPESampler(seed=seed + len(study.trials))  # a resumed study draws anew

    def progress(study, trial) -> None:
        value = "-" if trial.value is None else f"{trial.value:.2%}"
        log(f"trial {trial.number}: {trial.state.name.lower()} val acc {value} {trial.params}")

    study.optimize(
        Objective(optuna, base, params, folder, log),
        n_trials=trials,
        timeout=timeout_s,
        callbacks=[progress],
        gc_after_trial=True,
    )
    return _report(optuna, study, folder, params, source)


def _finished(optuna, study) -> list:
    return [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]


def _report(optuna, study, folder: Path, params: list[Param], source: str) -> StudyResult:
    done = _finished(optuna, study)
    if not done:
        raise ConvforgeError(f"no trial of study '{study.study_name}' completed; check the trials' errors above")
    best = study.best_trial
    files = {"best": _write_best(best, folder)}
    rows = [_trial_row(t) for t in sorted(done, key=lambda t: -t.value)[:10]]
    names = [p.name for p in params if p.kind != "fixed"]
    columns = [
        ("trial", "trial", "d"),
        ("val_acc", "val acc", ".2%"),
        ("test_acc", "test acc", ".2%"),
        ("time_s", "time s", ".1f"),
    ] + [(n, n, ".3g") for n in names]
    text, md = render(rows, columns)
    counts = {s: sum(t.state.name == s for t in study.trials) for s in ("COMPLETE", "PRUNED", "FAIL")}
    importances = _importances(optuna, study)
    files["history"] = _plot_history(optuna, study, folder / "history.png")
    if importances:
        files["importance"] = _plot_importance(importances, folder / "importance.png")
    notes = [
        f"data: {source}; study '{study.study_name}': {len(study.trials)} trials ({counts['COMPLETE']} complete, "
        f"{counts['PRUNED']} pruned, {counts['FAIL']} failed); TPE sampler, median pruner",
        f"best: trial {best.number}, validation accuracy {best.value:.2%}; repeat it with "
        f"`convforge train --config {files['best']}`",
    ]
    if not importances:
        notes.append("importance plot skipped: needs at least three complete trials with different values")
    files.update(
        write_report(
            folder,
            "Hyperparameter search",
            md,
            rows,
            {
                "study_name": study.study_name,
                "best_trial": best.number,
                "best_value": best.value,
                "best_params": best.params,
                "importances": importances,
                "states": counts,
            },
            notes,
        )
    )
    return StudyResult(
        "tune",
        folder,
        rows,
        text,
        md,
        files,
        extra={"best_value": best.value, "best_params": best.params, "best_config": str(files["best"])},
    )


def _trial_row(t) -> dict[str, Any]:
    return {
        "trial": t.number,
        "val_acc": t.value,
        "test_acc": t.user_attrs.get("test_acc"),
        "time_s": t.user_attrs.get("time_s"),
        **t.params,
    }


def _write_best(best, folder: Path) -> Path:
    config = dict(best.user_attrs["config"])
    model = Path(str(config["model"]))
    if model.suffix in (".yaml", ".yml", ".json") and model.is_file() and folder.resolve() in model.parents:
        target = folder / "best-model.yaml"
        shutil.copyfile(model, target)
        config["model"] = str(target.resolve())
    path = folder / "best.yaml"
    write_yaml(path, config)
    return path


def _importances(optuna, study) -> dict[str, float]:
    if len(_finished(optuna, study)) < 3:
        return {}  # optuna would only warn and give equal importances
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return {k: round(float(v), 4) for k, v in optuna.importance.get_param_importances(study).items()}
    except (RuntimeError, ValueError, ZeroDivisionError):
        return {}  # no parameter varied


def _plot_history(optuna, study, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7, 4))
    done = _finished(optuna, study)
    pruned = [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
    ax.scatter([t.number for t in done], [t.value for t in done], label="complete", zorder=3)
    last = [(t.number, max(t.intermediate_values.values())) for t in pruned if t.intermediate_values]
    if last:
        ax.scatter(*zip(*last), marker="x", color="gray", label="pruned (best reported)")
    best, xs, ys = -1.0, [], []
    for t in sorted(done, key=lambda t: t.number):
        best = max(best, t.value)
        xs.append(t.number)
        ys.append(best)
    ax.step(xs, ys, where="post", color="red", label="best so far")
    ax.set(xlabel="trial", ylabel="validation accuracy", title="optimization history")
    ax.grid(alpha=0.3)
    ax.legend()
    return save_figure(fig, path)


def _plot_importance(importances: dict[str, float], path: Path) -> Path:
    names = list(importances)[::-1]
    fig, ax = plt.subplots(figsize=(6, 0.5 + 0.4 * len(names)))
    ax.barh(names, [importances[n] for n in names])
    ax.set(xlabel="importance (optuna's default evaluator)", title="hyperparameter importance")
    return save_figure(fig, path)
