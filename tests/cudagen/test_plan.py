"""The plan: batch norm folding, fusion, buffers, unsupported layers; every zoo model generates."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from convforge.cudagen import generate
from convforge.cudagen._random_run import ZOO_SHAPES, make_run
from convforge.cudagen.plan import make_plan
from convforge.errors import ConvforgeError
from convforge.models import MODELS, build_model, resolve_spec

SMALL = {"alexnet": ((3, 32, 32), 10), "vgg11": ((3, 32, 32), 10)}  # keep weights small in fast tests


def _numpy_forward(plan, x: np.ndarray) -> np.ndarray:
    """Execute the plan with torch.nn.functional (float64) to check folding/fusion without a GPU."""
    F = torch.nn.functional
    vals = {plan.ops[0].inputs[0].id: torch.from_numpy(x).double()}
    W = {k: torch.from_numpy(v).double() for k, v in plan.weights.items()}
    acts = {0: lambda t, s: t, 1: F.relu, 2: lambda t, s: F.leaky_relu(t, s), 3: lambda t, s: torch.sigmoid(t)}
    acts[1] = lambda t, s: F.relu(t)
    acts[4] = lambda t, s: torch.tanh(t)
    acts[5] = lambda t, s: F.gelu(t)
    for op in plan.ops:
        p, a = op.p, vals[op.inputs[0].id]
        n = a.shape[0]
        if op.kind == "conv":
            w = W[op.weights["w"]]
            if p["dense"]:
                y = a.reshape(n, -1) @ w.T + (W[op.weights["b"]] if "b" in op.weights else 0)
            else:
                b = W.get(op.weights.get("b"))
                y = F.conv2d(a.reshape(n, p["cin"], p["h"], p["w"]), w, b, (p["sh"], p["sw"]), (p["ph"], p["pw"]),
                             (p["dh"], p["dw"]), p["groups"])  # fmt: skip
            if op.residual is not None:
                y = y + vals[op.residual.id].reshape(y.shape)
        elif op.kind == "pool":
            a = a.reshape(n, p["c"], p["h"], p["w"])
            pool = F.max_pool2d if p["is_max"] else F.avg_pool2d
            y = pool(a, (p["kh"], p["kw"]), (p["sh"], p["sw"]), (p["ph"], p["pw"]))
        elif op.kind == "global_pool":
            y = a.reshape(n, p["c"], -1).amax(2) if p["is_max"] else a.reshape(n, p["c"], -1).mean(2)
        elif op.kind == "scale_shift":
            y = a.reshape(n, p["c"], -1)
            if "scale" in op.weights:
                y = y * W[op.weights["scale"]][:, None] + W[op.weights["shift"]][:, None]
        elif op.kind == "add":
            y = a + vals[op.inputs[1].id].reshape(a.shape)
        elif op.kind == "maxout":
            y = a.reshape(n, p["cout"], p["pieces"], -1).amax(2)
        elif op.kind == "softmax":
            y = torch.softmax(a.reshape(n, -1), 1)
        else:
            y = torch.sigmoid(a.reshape(n, -1))
        vals[op.out.id] = acts[op.act](y, p.get("slope", 0.0))
    return vals[plan.ops[-1].out.id].numpy()


MIXED = {
    "layers": [
        {"conv": {"filters": 8, "kernel": 3, "padding": "same", "norm": "batchnorm", "act": "relu"}},
        {"maxpool": {"kernel": 2}},
        {"residual": {"layers": [{"conv": {"filters": 16, "kernel": 3, "padding": 1, "stride": 2}}, "batchnorm"]}},
        {"residual": {"layers": [{"conv": {"filters": 16, "kernel": 3, "padding": 1}}], "act": "leaky_relu"}},
        {"maxout": {"pieces": 2}},
        {"avgpool": {"kernel": 3, "stride": 2, "padding": 1}},
        "global_avgpool",
        "batchnorm",
        {"dense": {"units": 32, "act": "tanh"}},
        "dropout",
        {"dense": {"units": 16, "act": "gelu"}},
        {"dense": {"units": "classes"}},
        "softmax",
    ]
}


def test_plan_matches_torch_model(tmp_path):
    run = make_run(tmp_path / "run", MIXED)
    spec = json.loads(json.dumps(run.spec.to_dict()))
    from convforge._io import read_yaml

    spec = read_yaml(run.file("spec.yaml"))
    plan = make_plan(spec, run.state_dict(), (1, 28, 28), "softmax")
    kinds = [op.kind for op in plan.ops]
    assert kinds.count("scale_shift") == 1  # only the batchnorm after global_avgpool stays
    assert any(op.residual is not None for op in plan.ops)  # shortcut added in the conv epilogue
    x = np.random.default_rng(0).normal(size=(4, 1, 28, 28))
    model = build_model(resolve_spec(spec)).double().eval()
    model.load_state_dict(run.state_dict())
    ref = torch.softmax(model(torch.from_numpy(x)), 1).detach().numpy()
    np.testing.assert_allclose(_numpy_forward(plan, x), ref, atol=1e-6)


def test_gelu_and_global_max_pool_match_torch(tmp_path):
    spec_in = {"layers": [{"conv": {"filters": 6, "kernel": 3, "padding": "same", "act": "gelu"}},
                          {"batchnorm": {"scale": False}}, "gelu", "global_maxpool",
                          {"dense": {"units": "classes", "bias": False}}, "softmax"]}  # fmt: skip
    run = make_run(tmp_path / "run", spec_in)
    from convforge._io import read_yaml

    spec = read_yaml(run.file("spec.yaml"))
    plan = make_plan(spec, run.state_dict(), (1, 28, 28), "softmax")
    assert [op.kind for op in plan.ops] == ["conv", "scale_shift", "global_pool", "conv", "softmax"]
    x = np.random.default_rng(1).normal(size=(3, 1, 28, 28))
    model = build_model(resolve_spec(spec)).double().eval()
    model.load_state_dict(run.state_dict())
    ref = torch.softmax(model(torch.from_numpy(x)), 1).detach().numpy()
    np.testing.assert_allclose(_numpy_forward(plan, x), ref, atol=1e-6)


def test_unsupported_layer_is_refused():
    spec = {"layers": [{"type": "lstm", "params": {}, "out_shape": [10]}]}
    with pytest.raises(ConvforgeError, match="'lstm'"):
        make_plan(spec, {}, (1, 28, 28), "softmax")


def test_buffers_are_reused(tmp_path):
    run = make_run(tmp_path / "run", "resnet18", in_shape=(3, 32, 32))
    info, plan = generate(run, tmp_path / "out")
    assert info["buffers"] <= 4 < len(plan.ops)


@pytest.mark.parametrize("name", MODELS.names())
def test_zoo_model_generates(tmp_path, name):
    in_shape, classes = SMALL.get(name, ZOO_SHAPES[name])
    run = make_run(tmp_path / "run", name, in_shape=in_shape, num_classes=classes)
    info, _ = generate(run, tmp_path / "out", precision="fp16")
    manifest = json.loads((tmp_path / "out" / "weights.json").read_text())
    assert manifest["bytes"] == (tmp_path / "out" / "weights.bin").stat().st_size == info["weight_bytes"]
    assert "conv_fp16(" in (tmp_path / "out" / "network.cu").read_text()


def test_bad_options(tmp_path):
    run = make_run(tmp_path / "run", "mlp")
    for kwargs, word in ((dict(backend="tensorrt"), "backend"), (dict(precision="int8"), "precision"),
                         (dict(max_batch=0), "max-batch"), (dict(arch="hopper"), "arch")):  # fmt: skip
        with pytest.raises(ConvforgeError, match=word):
            generate(run, tmp_path / "out", **kwargs)


def test_find_nvcc_without_a_toolkit(monkeypatch):
    """No nvcc anywhere: the one-line error names the fix; required=False (the build tests' skip check) gives None."""
    from convforge.cudagen import build

    monkeypatch.delenv("CUDACXX", raising=False)
    monkeypatch.setattr(build.shutil, "which", lambda name: None)
    monkeypatch.setattr(build, "NVCC_FALLBACKS", ())
    assert build.find_nvcc(required=False) is None
    with pytest.raises(ConvforgeError, match="nvcc not found; install the CUDA toolkit"):
        build.find_nvcc()
