"""Fast recipes (`convforge train --recipe fast`): one file per recipe, registered in engine.recipes.RECIPES.

`fast` picks by source: mnist, fashion-mnist, cifar10 (or a source whose name mentions cifar), else the generic
folder recipe for photos.
"""

from __future__ import annotations

from pathlib import Path

from ..engine.recipes import RECIPES
from . import cifar10_fast, fashion_mnist_fast, folder_fast, mnist_fast

BY_NAME = {"digits": mnist_fast, "mnist": mnist_fast, "fashion-mnist": fashion_mnist_fast, "cifar10": cifar10_fast}
for _module in (mnist_fast, fashion_mnist_fast, cifar10_fast, folder_fast):
    RECIPES.register(_module.NAME, _module.train)


def pick(source: str | None):
    """The recipe module for a source name or path."""
    name = str(source or "")
    if name in BY_NAME:
        return BY_NAME[name]
    return cifar10_fast if "cifar" in Path(name).name.lower() else folder_fast


@RECIPES.register("fast")
def fast(cfg, *, source=None, **kw):
    """The fast recipe for this source (see pick)."""
    return pick(source or kw.get("source") or cfg.source).train(cfg, source=source, **kw)
