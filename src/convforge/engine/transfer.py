"""Transfer learning: start from another Run's weights (`--init RUN_DIR`), optionally freezing the features."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..errors import ConvforgeError
from ..run import Run
from .config import TrainConfig


def head_prefix(model: torch.nn.Module) -> str:
    """State-dict prefix of the last dense layer: the classifier head that is re-sized to the new classes."""
    last = None
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear):
            last = name
    if last is None:
        raise ConvforgeError("--freeze needs a model with a final dense layer to train; this model has none")
    return last + "."


def apply_init(model: torch.nn.Module, cfg: TrainConfig, log: Callable[[str], None]) -> list[str]:
    """Copy every tensor whose name and shape match from the init Run; return the names of frozen parameters."""
    source = Run.open(cfg.init)
    src_state = source.state_dict()
    own = model.state_dict()
    head = head_prefix(model)
    matching = {k: v for k, v in src_state.items() if k in own and own[k].shape == v.shape and not k.startswith(head)}
    if not matching:
        raise ConvforgeError(f"--init {cfg.init}: no layer matches this model's names and shapes; use the same --model")
    own.update(matching)
    model.load_state_dict(own)
    log(f"initialised {len(matching)}/{len(own)} tensors from {cfg.init}; the head ({head[:-1]}) starts fresh")
    frozen = []
    if cfg.freeze:
        for name, param in model.named_parameters():
            if not name.startswith(head):
                param.requires_grad_(False)
                frozen.append(name)
    return frozen


def freeze_batchnorm(model: torch.nn.Module) -> None:
    """Frozen features keep their batch-norm statistics: call after every model.train()."""
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.eval()
