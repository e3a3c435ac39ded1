"""tune: Optuna search over a YAML space, resumable SQLite study, best.yaml that `train --config` accepts."""

from __future__ import annotations

import pytest

pytest.importorskip("optuna")

import optuna  # noqa: E402

import convforge  # noqa: E402
from convforge._config import load_yaml  # noqa: E402
from convforge.engine import TrainConfig  # noqa: E402
from convforge.errors import ConfigError  # noqa: E402
from convforge.studies.tune import Objective, tune  # noqa: E402
from convforge.studies.tune_space import parse_space, split_values  # noqa: E402

SPACE = "lr: {low: 0.003, high: 0.03, log: true}\nsolver: [sgdm, adam]\naugment: {low: 0.0, high: 0.5}\n"


def test_tune_writes_best_config_and_resumes(tmp_path, cache_dir):
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    out = tmp_path / "tune"
    kw = dict(space=space, epochs=1, out=out, device="cpu", cache_dir=str(cache_dir), log=lambda s: None)
    r = tune(trials=2, **kw)
    for name in ("best.yaml", "study.db", "history.png", "report.md", "results.json"):
        assert (out / name).is_file(), name
    cfg = load_yaml(TrainConfig, out / "best.yaml")
    assert cfg.out is None and cfg.solver in ("sgdm", "adam") and 0.003 <= cfg.lr <= 0.03
    assert 0 < r.extra["best_value"] <= 1
    again = tune(trials=1, **kw)  # same storage and study name: continues
    assert len(optuna.load_study(study_name="convforge-tune", storage=f"sqlite:///{out / 'study.db'}").trials) == 3
    assert len(again.rows) == 3
    result = convforge.train(
        config=out / "best.yaml", epochs=1, out=str(tmp_path / "repeat"), progress=False, log=lambda s: None
    )
    assert result.test_accuracy is not None


def test_model_options_become_a_spec_file(tmp_path, cache_dir):
    out = tmp_path / "mlp"
    tune(
        space={"hidden": [16, 32], "lr": 0.01},
        trials=1,
        epochs=1,
        model="mlp",
        out=out,
        device="cpu",
        cache_dir=str(cache_dir),
        log=lambda s: None,
    )
    cfg = load_yaml(TrainConfig, out / "best.yaml")
    assert cfg.model.endswith("best-model.yaml")
    from convforge.models import resolve_spec

    assert resolve_spec(cfg.model, in_shape=(1, 8, 8), num_classes=10).param_count > 0


class _PruningTrial:
    """A stand-in trial that suggests fixed values and always asks to prune."""

    number = 0

    def __init__(self):
        self.reported = []
        self.user_attrs = {}

    def suggest_float(self, name, low, high, log=False):
        return low

    def suggest_categorical(self, name, choices):
        return choices[0]

    def report(self, value, step):
        self.reported.append((step, value))

    def should_prune(self):
        return True

    def set_user_attr(self, key, value):
        self.user_attrs[key] = value


def test_objective_prunes_through_on_epoch(tmp_path, cache_dir):
    base = TrainConfig(device="cpu", epochs=3, cache_dir=str(cache_dir))
    objective = Objective(
        optuna, base, parse_space({"lr": {"low": 0.01, "high": 0.1}}, base.model), tmp_path, lambda s: None
    )
    trial = _PruningTrial()
    with pytest.raises(optuna.TrialPruned):
        objective(trial)
    assert [step for step, _ in trial.reported] == [1]


def test_space_errors_name_the_key_and_the_fix():
    with pytest.raises(ConfigError, match="'dropout'.*digits-cnn"):
        parse_space({"dropout": {"low": 0.1, "high": 0.5}}, "digits-cnn")
    assert [p.name for p in parse_space({"dropout": {"low": 0.1, "high": 0.5}}, "vgg11")] == ["dropout"]
    with pytest.raises(ConfigError, match="low < high"):
        parse_space({"lr": {"low": 0.1, "high": 0.01}}, "digits-cnn")
    with pytest.raises(ConfigError, match="log range"):
        parse_space({"lr": {"low": 0.0, "high": 0.01, "log": True}}, "digits-cnn")
    with pytest.raises(ConfigError, match="'source' cannot be searched"):
        parse_space({"source": ["digits"]}, "digits-cnn")


def test_augment_expands_and_model_options_split():
    train, model = split_values({"augment": 0.5, "lr": 0.1, "hidden": 64}, "mlp")
    assert train == {"shift": 0.05, "zoom": 0.05, "shear": 5.0, "lr": 0.1} and model == {"hidden": 64}


def test_tune_needs_a_validation_split(tmp_path):
    with pytest.raises(ConfigError, match="validation split"):
        tune(split=(0.8, 0.0, 0.2), trials=1, out=tmp_path / "nv")
