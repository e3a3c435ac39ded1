"""ModelSpec: a resolved, validated layer spec with every shape inferred (saved in a Run as spec.yaml)."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .._io import write_text


class _NoAliasDumper(yaml.SafeDumper):
    """Never write &anchors/*aliases: a spec file must read the same to people and to codegen's parser."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


@dataclass(frozen=True)
class ModelSpec:
    """A resolved spec. Build it with ``resolve_spec``; ``layers`` are plain dicts, one per torch module:

    ``{type, name, params, out_shape, param_count}`` where ``params`` holds every parameter explicitly
    (defaults filled in, pairs as [height, width], padding as numbers, ``units: classes`` replaced), and a
    residual's ``params`` hold the resolved ``layers`` (body) and ``shortcut`` lists plus ``act``.
    """

    name: str
    in_shape: tuple[int, ...]  # (C, H, W)
    num_classes: int  # 2 for a sigmoid (binary) output
    output: str  # softmax | sigmoid
    layers: list[dict[str, Any]] = field(default_factory=list)
    init: str | None = None  # None: PyTorch's default init; he | glorot | dirac

    @property
    def param_count(self) -> int:
        """Trainable parameters (batchnorm running statistics are buffers and not counted)."""
        return sum(layer["param_count"] for layer in self.layers)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = dict(name=self.name, in_shape=list(self.in_shape), num_classes=self.num_classes)
        d["output"] = self.output
        if self.init is not None:
            d["init"] = self.init
        d["param_count"] = self.param_count  # informational: recomputed when read back
        d["layers"] = copy.deepcopy(self.layers)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelSpec:
        """Re-resolve a dict from ``to_dict`` (or a raw spec with in_shape/num_classes), validating it."""
        from ._resolve import resolve_spec  # resolve builds ModelSpecs: import here, not at module level

        return resolve_spec(d)

    def to_yaml(self, path: str | Path | None = None) -> str:
        """The spec as YAML text; written atomically to ``path`` when given."""
        text = yaml.dump(self.to_dict(), Dumper=_NoAliasDumper, sort_keys=False, default_flow_style=None, width=110)
        if path is not None:
            write_text(path, text)
        return text
