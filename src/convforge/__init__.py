"""convforge: from a folder of labelled images to a trained, measured, deployable CNN on GPUs.

import convforge
result = convforge.train("digits", epochs=10)
convforge.evaluate(result.run.path)
convforge.load(result.run.path).predict(["image.png"])
"""

__version__ = "0.1.0"

from .api import evaluate, inspect_data, list_models, load, predict, show_model, train  # noqa: E402
from .errors import ConfigError, ConvforgeError, DataError  # noqa: E402

__all__ = [
    "ConfigError",
    "ConvforgeError",
    "DataError",
    "evaluate",
    "inspect_data",
    "list_models",
    "load",
    "predict",
    "show_model",
    "train",
]
