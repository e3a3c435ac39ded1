"""The model zoo: one network per module, registered in MODELS under its CLI name."""

from . import alexnet, digits_cnn, imagenette_cnn, lenet5, mlp, resnet18, simple_cnn, vgg11  # noqa: F401
from ._common import MODELS, describe, zoo_spec

__all__ = ["MODELS", "describe", "zoo_spec"]
