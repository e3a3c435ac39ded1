"""Training: config, solvers, schedules, the loop, checkpoints and transfer learning."""

from .config import TrainConfig
from .loop import TrainResult, train
from .schedules import SCHEDULES
from .solvers import SOLVERS

__all__ = ["SCHEDULES", "SOLVERS", "TrainConfig", "TrainResult", "train"]

from . import recipes as _recipes  # noqa: E402,F401  registers the recipes and their networks (train --config RUN)
