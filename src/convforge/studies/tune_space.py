"""The search space of `convforge tune`: YAML in, one Optuna suggestion per key out.

```yaml
lr: {low: 1.0e-4, high: 0.3, log: true}      # float: low/high (log: log-uniform); ints give an int range
batch_size: [32, 64, 128]                    # a list: categorical
momentum: {low: 0.8, high: 0.99}
weight_decay: {low: 1.0e-6, high: 1.0e-2, log: true}
solver: [sgdm, nesterov, adam]
augment: {low: 0.0, high: 1.0}               # augmentation strength a: shift 0.1a, zoom 0.1a, shear 10a degrees
dropout: {low: 0.1, high: 0.6}               # a zoo-model option: only for models that take it
epochs: 5                                    # a scalar: fixed
```
Keys are TrainConfig fields, `augment`, or options of the zoo model (`dropout` for alexnet, vgg11, imagenette-cnn;
`hidden`, the width, for mlp). No zoo model takes a width or dropout option otherwise, so those keys are an error
naming the model's valid options.
"""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass
from typing import Any

from .._io import read_yaml
from ..engine.config import TrainConfig
from ..errors import ConfigError

TRAIN_FIELDS = {f.name for f in dataclasses.fields(TrainConfig)}
AUGMENT = {"shift": 0.1, "zoom": 0.1, "shear": 10.0}  # per unit of `augment` strength


@dataclass(frozen=True)
class Param:
    name: str
    kind: str  # float | int | categorical | fixed
    low: Any = None
    high: Any = None
    log: bool = False
    choices: tuple = ()

    def suggest(self, trial) -> Any:
        if self.kind == "fixed":
            return self.choices[0]
        if self.kind == "categorical":
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.name, self.low, self.high, log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, log=self.log)


def model_options(model: str) -> list[str]:
    """Options a zoo model takes (besides in_shape, num_classes); none for spec files."""
    from ..models import MODELS

    if model not in MODELS:
        return []
    return [p for p in inspect.signature(MODELS.get(model)).parameters if p not in ("in_shape", "num_classes")]


def default_space(model: str) -> dict[str, Any]:
    space: dict[str, Any] = {
        "lr": {"low": 1e-4, "high": 0.3, "log": True},
        "batch_size": [32, 64, 128],
        "momentum": {"low": 0.8, "high": 0.99},
        "weight_decay": {"low": 1e-6, "high": 1e-2, "log": True},
        "solver": ["sgdm", "nesterov", "adam", "adamw", "rmsprop"],
        "augment": {"low": 0.0, "high": 1.0},
    }
    options = model_options(model)
    if "dropout" in options:
        space["dropout"] = {"low": 0.0, "high": 0.6}
    if "hidden" in options:
        space["hidden"] = [64, 128, 256, 512]
    return space


def _param(name: str, value: Any) -> Param:
    if isinstance(value, list):
        if not value:
            raise ConfigError(f"search space key '{name}': give at least one choice")
        return Param(name, "categorical", choices=tuple(value))
    if isinstance(value, dict):
        unknown = set(value) - {"low", "high", "log"}
        if unknown or "low" not in value or "high" not in value:
            raise ConfigError(
                f"search space key '{name}' must be a list of choices or {{low, high, log}}, not {value!r}"
            )
        low, high, log = value["low"], value["high"], bool(value.get("log", False))
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high)) or low >= high:
            raise ConfigError(f"search space key '{name}': low and high must be numbers with low < high")
        if log and low <= 0:
            raise ConfigError(f"search space key '{name}': a log range needs low > 0, not {low}")
        kind = "int" if isinstance(low, int) and isinstance(high, int) else "float"
        return Param(name, kind, low=low, high=high, log=log)
    return Param(name, "fixed", choices=(value,))


def parse_space(raw: dict[str, Any] | None, model: str) -> list[Param]:
    """Check the keys against TrainConfig, `augment` and the model's options."""
    raw = default_space(model) if raw is None else raw
    if not isinstance(raw, dict) or not raw:
        raise ConfigError("a search space must be a mapping of option names to ranges or choices")
    options = model_options(model)
    for key in raw:
        if key in ("out", "source"):
            raise ConfigError(f"search space key '{key}' cannot be searched; give it as a `tune` option")
        if key not in TRAIN_FIELDS and key != "augment" and key not in options:
            valid = ", ".join(options) or "none"
            raise ConfigError(
                f"search space key '{key}' is neither a train option nor an option of model "
                f"'{model}' (its options: {valid}); remove it or choose a model that takes it"
            )
    return [_param(k, v) for k, v in raw.items()]


def load_space(path: str | None, model: str) -> list[Param]:
    return parse_space(read_yaml(path) if path else None, model)


def split_values(values: dict[str, Any], model: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Trial values -> (TrainConfig overrides, zoo-model options); `augment` expands to shift/zoom/shear."""
    train, model_opts = {}, {}
    options = model_options(model)
    for key, value in values.items():
        if key == "augment":
            train.update({k: round(scale * value, 4) for k, scale in AUGMENT.items()})
        elif key in TRAIN_FIELDS:
            train[key] = value
        elif key in options:
            model_opts[key] = value
    return train, model_opts
