"""build_model: a resolved ModelSpec -> SpecNet, a plain torch module of standard nn layers.

``model.layers[i]`` is spec layer i, so state-dict keys are ``layers.{i}.weight``, ``layers.{i}.body.{j}.bias``...
The model returns logits: the trailing softmax/sigmoid/classification layers are identity here (the loss and
predict apply the output function once).

Weight init: PyTorch's defaults (Kaiming-uniform with a=sqrt(5) for conv/dense weights, uniform biases; batchnorm
weight 1, bias 0) unless the spec sets ``init: he`` (Kaiming-normal, fan_in, ReLU gain; zero biases) or
``init: glorot`` (Xavier-uniform, Keras' default; zero biases) or ``init: dirac`` (PyTorch's defaults, then the
first filters of each conv set to the identity, so a fresh conv stack passes its input through: airbench's
"implicit residual"; zero conv biases).
"""

from __future__ import annotations

import torch
from torch import nn

from . import _conv_act, _kernels, _norm_act, _small_conv, _small_dense
from ._layer import OUTPUT_TYPES, build_seq
from ._resolve import resolve_spec
from .spec import ModelSpec


class SpecNet(nn.Module):
    """The network of a ModelSpec: one module per spec layer, applied in order; returns logits.

    On CUDA, a training batchnorm followed by its ReLU/GELU runs as one fused op (models/_norm_act.py), and so does a
    small conv and its activation where no gradient is wanted (models/_conv_act.py: a frozen stem, evaluation); under
    autocast, a stride-1 conv of <= 64 channels (models/_small_conv.py) and a small dense layer with the flatten
    before it (models/_small_dense.py), each with a ReLU after it, run on Triton kernels, forward and backward (a
    dense, ReLU, dense head as one op). The modules and the state dict stay those of the spec."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.spec = spec
        modules, _ = build_seq(spec.layers, spec.in_shape)
        for i in _trailing_outputs(spec):
            modules[i] = nn.Identity()
        self.layers = nn.ModuleList(modules)
        self.norm_act = _norm_act.pairs(self.layers)
        self.conv_act = _conv_act.pairs(self.layers)
        self.small_conv = _small_conv.convs(self.layers)
        self.small_dense = _small_dense.starts(self.layers)
        self.dense_pairs = _small_dense.pairs(self.layers, self.small_dense)
        _init_weights(self, spec.init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.is_cuda and (self.conv_act or self.small_conv or self.small_dense or (self.training and self.norm_act)):
            return self._forward_fused(x)
        for layer in self.layers:
            x = layer(x)
        return x

    def _forward_fused(self, x: torch.Tensor) -> torch.Tensor:
        i, layers = 0, self.layers
        while i < len(layers):
            if i in self.conv_act and (code := _conv_act.fused_code(layers[i], layers[i + 1], x)) is not None:
                x, i = _conv_act.conv_act(layers[i], code, x), i + 2
            elif i in self.small_conv and _small_conv.usable(layers[i], x):
                relu = i + 1 < len(layers) and _kernels.fuses_relu(layers[i + 1])
                x, i = _small_conv.small_conv(layers[i], x, relu), i + 1 + relu
            elif i in self.dense_pairs and _small_dense.pair_usable(layers, i, j := self.dense_pairs[i], x):
                x, i = _small_dense.small_dense_pair(layers[j - 2], layers[j], x), j + 1
            elif i in self.small_dense and _small_dense.usable(layers, i, j := self.small_dense[i], x):
                relu = j + 1 < len(layers) and _kernels.fuses_relu(layers[j + 1])
                x, i = _small_dense.small_dense(layers[j], x, relu), j + 1 + relu
            elif i in self.norm_act and (code := _norm_act.fused_code(layers[i], layers[i + 1], x)) is not None:
                x, i = _norm_act.norm_act(layers[i], code, x), i + 2
            else:
                x, i = layers[i](x), i + 1
        return x


def _trailing_outputs(spec: ModelSpec) -> list[int]:
    """Indices of the output layers at the end of the spec (identity in forward: the model returns logits)."""
    out = []
    for i in range(len(spec.layers) - 1, -1, -1):
        if spec.layers[i]["type"] not in OUTPUT_TYPES:
            break
        out.append(i)
    return out


def _init_weights(model: nn.Module, init: str | None) -> None:
    if init is None:
        return
    if init == "dirac":
        for m in model.modules():
            if isinstance(m, nn.Conv2d) and m.groups == 1:
                nn.init.dirac_(m.weight.data[: m.in_channels])  # the first min(in, out) filters
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        return
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            if init == "he":
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            else:
                nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def build_model(spec: ModelSpec) -> SpecNet:
    """The torch module of a resolved spec (a raw spec is resolved first; it then needs its own in_shape)."""
    return SpecNet(spec if isinstance(spec, ModelSpec) else resolve_spec(spec))
