"""Spec + weights -> the list of kernel launches the generated code makes, with folded weights and buffers.

The plan is plain data (dataclasses of ints, strings and numpy arrays) that the templates loop over. Batch norm
after a conv/dense is folded into its weights here (numpy, float64), activations after a conv, dense, pool or
residual add are fused into that kernel's epilogue, and the last conv of a residual body adds the shortcut in its
epilogue. Dropout and flatten cost nothing (NCHW is already flat in channel-major order).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import ConvforgeError

ACTS = {"none": 0, "relu": 1, "leaky_relu": 2, "sigmoid": 3, "tanh": 4, "gelu": 5}
OUTPUTS = {"softmax", "classification", "sigmoid"}
NO_OPS = {"dropout", "flatten", "input"}
SUPPORTED = {"conv", "dense", "batchnorm", "maxpool", "avgpool", "global_avgpool", "global_maxpool", "maxout"}
SUPPORTED |= {"residual"}
SUPPORTED |= set(ACTS) | OUTPUTS | NO_OPS


@dataclass
class Tensor:
    id: int
    shape: tuple[int, ...]  # per image, no batch dimension
    slot: int = -1  # activation buffer it lives in; -1: the input buffer, -2: the output buffer

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))


@dataclass
class Op:
    kind: str  # conv | pool | global_pool | scale_shift | add | maxout | softmax | sigmoid
    name: str  # the spec layer it comes from, e.g. "layers.4.body.0"
    inputs: list[Tensor]
    out: Tensor
    p: dict[str, Any] = field(default_factory=dict)  # ints for the launcher (shapes, act, slope)
    weights: dict[str, str] = field(default_factory=dict)  # role -> weight entry name
    residual: Tensor | None = None

    @property
    def act(self) -> int:
        return self.p.get("act", 0)


@dataclass
class Plan:
    in_shape: tuple[int, int, int]
    num_outputs: int
    output: str  # softmax | sigmoid
    ops: list[Op]
    weights: dict[str, np.ndarray]  # name -> float32 array, in the order they are stored
    slot_sizes: list[int] = field(default_factory=list)  # elements per image of each activation buffer


class _Builder:
    def __init__(self, state: dict[str, np.ndarray]):
        self.state = state
        self.ops: list[Op] = []
        self.weights: dict[str, np.ndarray] = {}
        self.n_tensors = 0

    def tensor(self, shape) -> Tensor:
        self.n_tensors += 1
        return Tensor(self.n_tensors, tuple(int(s) for s in shape))

    def param(self, key: str) -> np.ndarray:
        if key not in self.state:
            raise ConvforgeError(f"weights have no '{key}'; model.safetensors does not match spec.yaml, re-train")
        return np.asarray(self.state[key], dtype=np.float64)

    def add_weight(self, name: str, value: np.ndarray) -> str:
        self.weights[name] = value
        return name

    def emit(self, op: Op) -> Op:
        self.ops.append(op)
        return op

    # -- layer lists ------------------------------------------------------------------------------------
    def seq(self, layers: list[dict], x: Tensor, prefix: str, top: bool = False) -> Tensor:
        last: Op | None = None  # the op whose output is x, while nothing else has read it
        for i, layer in enumerate(layers):
            kind, p, name = layer["type"], layer.get("params") or {}, f"{prefix}.{i}"
            out_shape = tuple(layer.get("out_shape") or x.shape)
            if kind not in SUPPORTED:
                raise ConvforgeError(
                    f"codegen does not support layer type '{kind}' ({name}); use the layers listed by "
                    f"`convforge models --layers` that codegen supports: {', '.join(sorted(SUPPORTED))}"
                )
            if kind in NO_OPS:
                x = Tensor(x.id, out_shape, x.slot) if kind == "flatten" else x
                if last is not None:
                    last.out = x
                continue
            if kind in OUTPUTS and top and all(lay["type"] in OUTPUTS for lay in layers[i:]):
                break  # the network's output layer: applied once at the end (run.output)
            x, last = self.layer(kind, p, name, x, out_shape, last)
        return x

    def layer(self, kind: str, p: dict, name: str, x: Tensor, out_shape, last: Op | None):
        fusable = last is not None and last.act == 0 and last.kind in ("conv", "pool", "add", "scale_shift")
        if kind in ACTS or kind == "sigmoid":
            slope = float(p.get("slope", 0.01))
            if fusable:
                last.p.update(act=ACTS[kind], slope=slope)
                return x, last
            return self.act_op(name, x, ACTS[kind], slope)
        if kind in ("softmax", "classification"):
            if len(x.shape) != 1:
                raise ConvforgeError(f"codegen supports softmax ({name}) only on vectors; flatten before it")
            op = self.emit(Op("softmax", name, [x], self.tensor(x.shape)))
            return op.out, None
        if kind == "batchnorm":
            eps = float(p.get("eps", 1e-5))
            # x.shape[0] == cout: not a BatchNorm1d over a flattened C x H x W map (one scale per feature)
            conv_bn = fusable and last.kind == "conv" and x.shape[0] == last.p["cout"]
            if conv_bn and last.residual is None and "w" in last.weights:
                self.fold_bn(last, name, eps)
                return x, last
            return self.bn_op(name, x, eps)
        if kind in ("conv", "dense"):
            return self.conv(kind, p, name, x, out_shape)
        if kind in ("maxpool", "avgpool"):
            shape = dict(zip("c h w".split(), x.shape))
            q = dict(shape, ho=out_shape[1], wo=out_shape[2], is_max=int(kind == "maxpool"), act=0, slope=0.0)
            q.update(kh=p["kernel"][0], kw=p["kernel"][1], sh=p["stride"][0], sw=p["stride"][1])
            q.update(ph=p["padding"][0], pw=p["padding"][1])
            op = self.emit(Op("pool", name, [x], self.tensor(out_shape), q))
            return op.out, op
        if kind in ("global_avgpool", "global_maxpool"):
            q = dict(c=x.shape[0], hw=x.shape[1] * x.shape[2], is_max=int(kind == "global_maxpool"))
            op = self.emit(Op("global_pool", name, [x], self.tensor(out_shape), q))
            return op.out, None
        if kind == "maxout":
            hw = int(np.prod(x.shape[1:])) if len(x.shape) > 1 else 1
            q = dict(cout=out_shape[0], hw=hw, pieces=int(p["pieces"]))
            op = self.emit(Op("maxout", name, [x], self.tensor(out_shape), q))
            return op.out, None
        return self.residual(p, name, x, out_shape)

    def act_op(self, name: str, x: Tensor, act: int, slope: float):
        c, hw = (x.shape[0], int(np.prod(x.shape[1:]))) if len(x.shape) > 1 else (x.shape[0], 1)
        op = self.emit(Op("scale_shift", name, [x], self.tensor(x.shape), dict(c=c, hw=hw, act=act, slope=slope)))
        return op.out, op

    def bn_op(self, name: str, x: Tensor, eps: float):
        scale, shift = self.bn_affine(name, eps)
        out, op = self.act_op(name, x, 0, 0.0)
        op.weights = {
            "scale": self.add_weight(f"{name}.scale", scale),
            "shift": self.add_weight(f"{name}.shift", shift),
        }
        return out, op

    def bn_affine(self, name: str, eps: float) -> tuple[np.ndarray, np.ndarray]:
        var, mean = self.param(f"{name}.running_var"), self.param(f"{name}.running_mean")
        gamma = self.param(f"{name}.weight") if f"{name}.weight" in self.state else np.ones_like(var)
        beta = self.param(f"{name}.bias") if f"{name}.bias" in self.state else np.zeros_like(var)
        scale = gamma / np.sqrt(var + eps)
        return scale, beta - mean * scale

    def fold_bn(self, op: Op, name: str, eps: float) -> None:
        """y = scale * (W x + b) + shift  ->  W' = scale W, b' = scale b + shift (float64, stored float32)."""
        scale, shift = self.bn_affine(name, eps)
        w = self.weights[op.weights["w"]]
        self.weights[op.weights["w"]] = w * scale.reshape(-1, *([1] * (w.ndim - 1)))
        b = self.weights[op.weights["b"]] if "b" in op.weights else np.zeros_like(scale)
        op.weights["b"] = op.weights.get("b", f"{op.name}.bias")
        self.weights[op.weights["b"]] = b * scale + shift

    def conv(self, kind: str, p: dict, name: str, x: Tensor, out_shape):
        w = self.param(f"{name}.weight")
        if kind == "dense":
            cin = int(np.prod(x.shape))
            q = dict(cin=cin, h=1, w=1, cout=w.shape[0], ho=1, wo=1, kh=1, kw=1, sh=1, sw=1, ph=0, pw=0)
            q.update(dh=1, dw=1, groups=1)
        else:
            q = dict(cin=x.shape[0], h=x.shape[1], w=x.shape[2], cout=out_shape[0], ho=out_shape[1])
            q.update(wo=out_shape[2], kh=p["kernel"][0], kw=p["kernel"][1], sh=p["stride"][0], sw=p["stride"][1])
            dil = p.get("dilation", [1, 1])
            q.update(ph=p["padding"][0], pw=p["padding"][1], dh=dil[0], dw=dil[1], groups=p.get("groups", 1))
        q.update(act=0, slope=0.0, dense=int(kind == "dense"))
        weights = {"w": self.add_weight(f"{name}.weight", w)}
        if f"{name}.bias" in self.state:
            weights["b"] = self.add_weight(f"{name}.bias", self.param(f"{name}.bias"))
        op = self.emit(Op("conv", name, [x], self.tensor(out_shape), q, weights))
        return op.out, op

    def residual(self, p: dict, name: str, x: Tensor, out_shape):
        shortcut = p.get("shortcut") or []
        s = self.seq(shortcut, x, f"{name}.shortcut") if isinstance(shortcut, list) and shortcut else x
        n_before = len(self.ops)
        y = self.seq(p.get("layers") or p.get("body") or [], x, f"{name}.body")
        act = ACTS.get(p.get("act") or "none", None)
        if act is None:
            raise ConvforgeError(f"codegen does not support residual act '{p.get('act')}' ({name}); use relu")
        slope = float(p.get("slope", 0.01))
        last = self.ops[-1] if len(self.ops) > n_before else None
        if last is not None and last.out.id == y.id and last.kind == "conv" and last.act == 0 and s.id != y.id:
            last.residual = s
            last.inputs.append(s)
            last.p.update(act=act, slope=slope)
            return y, last
        op = self.emit(Op("add", name, [y, s], self.tensor(out_shape), dict(act=act, slope=slope)))
        return op.out, op


def assign_buffers(steps, sizes: dict[int, int], fixed: dict[int, int]) -> tuple[dict[int, int], list[int]]:
    """A buffer for the output of every step (input tensor ids, output tensor id), reusing buffers whose tensor is
    dead; the tensors in ``fixed`` (the network's input and output) keep theirs. Returns ({tensor id: buffer},
    [size of each buffer]) with sizes in the unit of ``sizes``."""
    last_use: dict[int, int] = {}
    for i, (ins, _) in enumerate(steps):
        for t in ins:
            last_use[t] = i
    slot_of: dict[int, int] = dict(fixed)
    free: list[int] = []
    out_sizes: list[int] = []
    for i, (ins, out) in enumerate(steps):
        if out not in slot_of:
            fit = [s for s in free if out_sizes[s] >= sizes[out]] or free
            if fit:
                slot = max(fit, key=lambda s: out_sizes[s]) if fit is free else min(fit, key=lambda s: out_sizes[s])
                free.remove(slot)
                out_sizes[slot] = max(out_sizes[slot], sizes[out])
            else:
                slot = len(out_sizes)
                out_sizes.append(sizes[out])
            slot_of[out] = slot
        for u in set(ins):
            if last_use.get(u) == i and slot_of.get(u, -1) >= 0:
                free.append(slot_of[u])
    return slot_of, out_sizes


def _assign_slots(plan: Plan, x_in: Tensor, y_out: Tensor) -> None:
    """Give every intermediate tensor an activation buffer, reusing buffers whose tensor is dead."""
    steps = [([t.id for t in op.inputs], op.out.id) for op in plan.ops]
    sizes = {op.out.id: op.out.size for op in plan.ops}
    slot_of, plan.slot_sizes = assign_buffers(steps, sizes, {x_in.id: -1, y_out.id: -2})
    for op in plan.ops:
        for t in [*op.inputs, op.out, *([op.residual] if op.residual else [])]:
            t.slot = slot_of[t.id]


def make_plan(spec_dict: dict, state: dict[str, Any], in_shape, output: str) -> Plan:
    """Walk the resolved spec; return the launches, folded float32 weights and buffer sizes."""
    state = {
        k: (v.detach().cpu().double().numpy() if hasattr(v, "detach") else np.asarray(v)) for k, v in state.items()
    }
    b = _Builder(state)
    x_in = b.tensor(in_shape)
    y = b.seq(spec_dict["layers"], x_in, "layers", top=True)
    if y.id == x_in.id:
        raise ConvforgeError("the model has no layers codegen can run; check spec.yaml")
    k = y.size
    if output == "sigmoid":
        b.emit(Op("sigmoid", "output", [y], b.tensor((k,)), dict(cols=k)))
    else:
        b.emit(Op("softmax", "output", [y], b.tensor((k,)), dict(cols=k)))
    y_out = b.ops[-1].out
    weights = {name: np.ascontiguousarray(w, dtype=np.float32) for name, w in b.weights.items()}
    plan = Plan(tuple(in_shape), k, output, b.ops, weights)
    _assign_slots(plan, x_in, y_out)
    return plan
