"""The Run folder: the one artifact that stages hand each other. Only this module knows its layout.

Layout (see docs/ARCHITECTURE.md): meta.json, config.yaml, spec.yaml, model.safetensors, checkpoints/,
metrics.csv/json, and the evaluation outputs. Nothing is pickled.
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from . import __version__
from ._io import atomic_path, read_yaml, write_json, write_yaml
from .errors import ConvforgeError

FORMAT_VERSION = 1
REQUIRED_FILES = ("meta.json", "spec.yaml", "model.safetensors")


def load_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read tensors and metadata; a file that is not safetensors is a ConvforgeError (never unpickled)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
        return load_file(str(path)), metadata
    except (SafetensorError, OSError, ValueError) as e:
        raise ConvforgeError(f"{path} is not a valid safetensors file ({e}); re-train or re-export it") from None


def save_safetensors(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None) -> None:
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "convforge", **(metadata or {})})


@dataclass
class Run:
    """A trained (or training) model's folder."""

    path: Path

    # -- layout -----------------------------------------------------------------------------------------
    @property
    def meta_path(self) -> Path:
        return self.path / "meta.json"

    @property
    def weights_path(self) -> Path:
        return self.path / "model.safetensors"

    @property
    def checkpoint_path(self) -> Path:
        return self.path / "checkpoints" / "last.safetensors"

    def file(self, name: str) -> Path:
        return self.path / name

    # -- reading ----------------------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | Path, *, need_weights: bool = True) -> Run:
        """Open an existing Run, checking it is complete and not from a newer convforge."""
        path = Path(path)
        if not path.is_dir():
            raise ConvforgeError(f"run folder not found: {path}; give the folder that `convforge train` printed")
        required = REQUIRED_FILES if need_weights else ("meta.json", "spec.yaml")
        missing = [name for name in required if not (path / name).is_file()]
        if missing:
            raise ConvforgeError(
                f"run folder {path} is missing {', '.join(missing)}; it is incomplete (was training interrupted? "
                f"resume it with `convforge train --resume {path}`)"
            )
        run = cls(path)
        version = run.meta.get("format_version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise ConvforgeError(
                f"run folder {path} was written by a newer convforge (format {version}, this one reads "
                f"{FORMAT_VERSION}); upgrade convforge"
            )
        return run

    @cached_property
    def meta(self) -> dict[str, Any]:
        try:
            return json.loads(self.meta_path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ConvforgeError(f"cannot read {self.meta_path} ({e}); the run folder is damaged") from None

    @property
    def classes(self) -> list[str]:
        return list(self.meta["classes"])

    @property
    def preprocessing(self) -> dict[str, Any]:
        return dict(self.meta["preprocessing"])

    @property
    def output(self) -> str:
        return self.meta.get("output", "softmax")

    @cached_property
    def spec(self):  # -> ModelSpec
        from .models import ModelSpec

        return ModelSpec.from_dict(read_yaml(self.path / "spec.yaml"))

    def config_dict(self) -> dict[str, Any]:
        return read_yaml(self.path / "config.yaml") or {}

    def state_dict(self) -> dict[str, torch.Tensor]:
        tensors, _ = load_safetensors(self.weights_path)
        return tensors

    def load_model(self, device: str | torch.device = "cpu") -> torch.nn.Module:
        """The trained torch module in eval mode (returns logits)."""
        from .models import build_model

        model = build_model(self.spec)
        state = self.state_dict()
        result = model.load_state_dict(state, strict=False)
        if result.missing_keys or result.unexpected_keys:
            raise ConvforgeError(
                f"{self.weights_path} does not match spec.yaml (missing {result.missing_keys[:3]}, unexpected "
                f"{result.unexpected_keys[:3]}); the run folder is damaged, re-train it"
            )
        return model.to(device).eval()

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 N x C x H x W -> the float input the model was trained on: (x/255 - mean) / std."""
        from .inference import scale_factors

        offset, scale = scale_factors(self.preprocessing["mean"], self.preprocessing["std"], images.device)
        return (images.float() - offset) * scale

    # -- writing ----------------------------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | Path, *, meta: dict[str, Any], spec_dict: dict, config_dict: dict) -> Run:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        run = cls(path)
        full_meta = {
            "format_version": FORMAT_VERSION,
            "convforge_version": __version__,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            **meta,
        }
        write_json(run.meta_path, full_meta)
        write_yaml(path / "spec.yaml", spec_dict)
        write_yaml(path / "config.yaml", config_dict)
        run.__dict__.pop("meta", None)
        return run

    def update_meta(self, **fields: Any) -> None:
        meta = {**self.meta, **fields}
        write_json(self.meta_path, meta)
        self.__dict__["meta"] = meta

    def save_weights(self, state: dict[str, torch.Tensor]) -> None:
        save_safetensors(state, self.weights_path)


def default_run_dir(source: str, model: str, root: str | Path = "runs") -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    name = Path(source).name if ("/" in source or Path(source).exists()) else source
    base = Path(root) / f"{name}-{Path(model).stem}-{stamp}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path
