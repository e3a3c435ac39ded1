"""convforge: from a folder of labelled images to a trained, measured, deployable CNN on GPUs.

import convforge
result = convforge.train("digits", epochs=10)
convforge.evaluate(result.run.path)
convforge.load(result.run.path).predict(["image.png"])
"""

__version__ = "0.1.0"

from .api import (  # noqa: E402
    codegen,
    evaluate,
    export,
    inspect_data,
    list_models,
    load,
    predict,
    show_model,
    train,
)
from .errors import ConfigError, ConvforgeError, DataError  # noqa: E402

__all__ = [
    "ConfigError",
    "ConvforgeError",
    "DataError",
    "codegen",
    "evaluate",
    "export",
    "inspect_data",
    "list_models",
    "load",
    "predict",
    "show_model",
    "train",
]
