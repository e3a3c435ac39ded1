"""Built-in datasets by name: ``SOURCES.get(name)(cfg, progress) -> Prepared``."""

from __future__ import annotations

from collections.abc import Callable

from ..._registry import Registry
from .._types import Prepared
from ..config import DataConfig
from . import cats_vs_dogs, cifar10, digits, imagenette, mnist

SOURCES: Registry[Callable[[DataConfig, bool], Prepared]] = Registry("dataset")
SOURCES.register("digits", digits.load)
SOURCES.register("mnist", mnist.load_mnist)
SOURCES.register("fashion-mnist", mnist.load_fashion)
SOURCES.register("cifar10", cifar10.load)
SOURCES.register("imagenette", imagenette.load)
SOURCES.register("cats-vs-dogs", cats_vs_dogs.load)
