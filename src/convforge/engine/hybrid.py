"""Hybrid parallelism (Krizhevsky 2014, "One weird trick"): conv layers data-parallel, dense layers model-parallel.

Every rank runs the layers before the first dense layer on its own part of the batch (DDP averages their
gradients). The features of the whole global batch are then all-gathered, and every dense layer is split by
output features: rank r holds rows [r*c, (r+1)*c) of each weight (c = ceil(out/world); the last ranks may hold
fewer). A dense layer reads the full feature vector (its input slices all-gathered), element-wise layers
(relu, dropout...) act on the slice, and the logits are gathered once more; each rank keeps its own rows for
its loss. The collectives are torch.distributed.nn's autograd versions: all_gather's backward reduce-scatters.

Each rank's backward differentiates only its own loss, but the reduce-scatters add every rank's contribution,
so a dense slice receives `world` times the gradient of the mean loss: a hook divides it by `world`. The conv
gradients are right after DDP's averaging. The result equals the single-device step (tests/distributed).

`state_dict()` gathers the slices into the full SpecNet state (same keys), `load_state_dict()` cuts a full state
into this rank's slices; the optimizer state of the slices is gathered and cut the same way for checkpoints.
"""

from __future__ import annotations

import math
import warnings

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.distributed.nn.functional import all_gather

from ..errors import ConfigError

# the autograd all_gather is marked deprecated in favour of a private module; it is the public one with a backward
warnings.filterwarnings("ignore", message=r".*torch\.distributed\.nn\.functional\.all_gather is deprecated.*")

ELEMENTWISE = {"relu", "leaky_relu", "tanh", "sigmoid", "dropout"}
OUTPUTS = {"softmax", "sigmoid", "classification"}  # identity at the end of a SpecNet


def _rows(full: int, world: int, rank: int) -> slice:
    chunk = math.ceil(full / world)
    return slice(min(rank * chunk, full), min((rank + 1) * chunk, full))


def _head_plan(spec) -> tuple[int, dict[int, int]]:
    """Index of the first dense layer and {dense index: out features}; a layer that cannot be split is an error."""
    types = [layer["type"] for layer in spec.layers]
    if "dense" not in types:
        raise ConfigError(f"--parallel hybrid splits dense layers, and model '{spec.name}' has none; use data")
    first = types.index("dense")
    dense = {}
    for i in range(first, len(types)):
        kind = types[i]
        params = spec.layers[i].get("params", spec.layers[i])
        if kind == "dense":
            dense[i] = int(params["units"])
        elif kind not in ELEMENTWISE and not (kind in OUTPUTS and all(t in OUTPUTS for t in types[i:])):
            raise ConfigError(
                f"--parallel hybrid: layer {i} ({kind}) after the first dense layer cannot be split by features; "
                f"use --parallel data"
            )
    return first, dense


class HybridNet(nn.Module):
    """A SpecNet whose dense layers hold this rank's output-feature slice; see the module docstring."""

    def __init__(self, model: nn.Module, device: torch.device) -> None:
        super().__init__()
        self.net = model
        self.world, self.rank = dist.get_world_size(), dist.get_rank()
        self.first, self.dense = _head_plan(model.spec)
        self.sharded: dict[str, int] = {}  # state key -> full rows
        self.full_rows: dict[int, int] = {}  # id(param) -> full rows
        for i, units in self.dense.items():
            self._split(i, units)
        features = nn.Sequential(*model.layers[: self.first])  # the same modules, so the same parameters
        if any(p.requires_grad for p in features.parameters()):
            ids = [device.index] if device.type == "cuda" else None
            features = nn.parallel.DistributedDataParallel(features, device_ids=ids)
        self.features = [features]  # a list: not a registered child, so parameters() and state keys stay SpecNet's
        self._steps, self._full_state = 0, (-1, {})  # the gathered state of step _full_state[0]

    def _split(self, i: int, units: int) -> None:
        linear = self.net.layers[i]
        rows = _rows(units, self.world, self.rank)
        for name in ("weight", "bias"):
            param = getattr(linear, name)
            if param is None:
                continue
            part = nn.Parameter(param.detach()[rows].clone(), requires_grad=param.requires_grad)
            setattr(linear, name, part)
            self.sharded[f"layers.{i}.{name}"] = units
            self.full_rows[id(part)] = units
            if part.requires_grad:
                part.register_hook(lambda g: g / self.world)  # every rank's loss reached this slice
        linear.out_features = rows.stop - rows.start

    # -- forward --------------------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._steps += 1  # a training forward: the weights are about to change
        x = self.features[0](x)
        n = x.shape[0]
        x = torch.cat(all_gather(x.contiguous()), 0)  # the global batch's features on every rank
        piece, width = x, 0
        for i in range(self.first, len(self.net.layers)):
            layer = self.net.layers[i]
            if i in self.dense:
                if width:
                    x = self._gather_features(piece, width)
                piece, width = layer(x), self.dense[i]
            else:
                piece = layer(piece)  # element-wise: the slice is enough
        logits = self._gather_features(piece, width)
        return logits[self.rank * n : (self.rank + 1) * n]

    def _gather_features(self, piece: torch.Tensor, width: int) -> torch.Tensor:
        chunk = math.ceil(width / self.world)
        padded = F.pad(piece, (0, chunk - piece.shape[1])).contiguous()
        return torch.cat(all_gather(padded), 1)[:, :width]

    # -- full state <-> slices ------------------------------------------------------------------------------
    def _gather_rows(self, t: torch.Tensor, full: int) -> torch.Tensor:
        chunk = math.ceil(full / self.world)
        padded = t.new_zeros((chunk, *t.shape[1:]))
        padded[: t.shape[0]] = t.detach()
        parts = [torch.empty_like(padded) for _ in range(self.world)]
        dist.all_gather(parts, padded)
        return torch.cat(parts)[:full]

    def state_dict(self, *args, **kwargs):
        """The full SpecNet state (a collective: every rank calls it); gathered once per step (checkpoint, eval)."""
        if self._full_state[0] != self._steps:
            local = self.net.state_dict()
            full = {k: self._gather_rows(v, self.sharded[k]) if k in self.sharded else v for k, v in local.items()}
            self._full_state = (self._steps, full)
        return dict(self._full_state[1])

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """Load a full SpecNet state: this rank keeps its slices."""
        self._full_state = (-1, {})
        local = {}
        for k, v in state_dict.items():
            local[k] = v[_rows(self.sharded[k], self.world, self.rank)] if k in self.sharded else v
        return self.net.load_state_dict(local, strict=strict, assign=assign)

    def full_optimizer_state(self, optimizer: torch.optim.Optimizer) -> dict:
        """optimizer.state_dict() with the slices' state gathered to full size (a collective)."""
        return self._map_optimizer_state(optimizer, optimizer.state_dict(), self._gather_rows)

    def local_optimizer_state(self, optimizer: torch.optim.Optimizer, full: dict) -> dict:
        def cut(t: torch.Tensor, rows: int) -> torch.Tensor:
            return t[_rows(rows, self.world, self.rank)]

        return self._map_optimizer_state(optimizer, full, cut, full_shape=True)

    def _map_optimizer_state(self, optimizer, state: dict, fn, full_shape: bool = False) -> dict:
        params = [p for group in optimizer.param_groups for p in group["params"]]
        out = {"param_groups": state["param_groups"], "state": {}}
        for pid in sorted(state["state"], key=int):
            entries = dict(state["state"][pid])  # a copy: state_dict() shares the live state's tensors
            p = params[int(pid)]
            rows = self.full_rows.get(id(p))
            for key, value in entries.items():
                shape = (rows, *p.shape[1:]) if full_shape and rows is not None else p.shape
                if rows is not None and torch.is_tensor(value) and value.shape == shape:
                    entries[key] = fn(value, rows)
            out["state"][pid] = entries
        return out
