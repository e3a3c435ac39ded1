"""resolve_spec: forms of input, shorthands, shape inference, every validation rule, YAML round trip."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from convforge.errors import ConfigError
from convforge.models import MODELS, ModelSpec, load_spec_file, resolve_spec

DIGITS = [
    {"conv": {"filters": 8, "kernel": 3, "padding": "same", "norm": "batchnorm", "act": "relu"}},
    {"maxpool": {"kernel": 2}},
    "flatten",
    {"dense": {"units": "classes"}},
    "softmax",
]


def types(spec: ModelSpec) -> list[str]:
    return [layer["type"] for layer in spec.layers]


def test_list_dict_and_shorthand_expansion() -> None:
    spec = resolve_spec(DIGITS, (1, 8, 8), 10)
    assert types(spec) == ["conv", "batchnorm", "relu", "maxpool", "flatten", "dense", "softmax"]
    assert [layer["out_shape"] for layer in spec.layers] == [[8, 8, 8]] * 3 + [[8, 4, 4], [128], [10], [10]]
    assert spec.layers[0]["params"] == dict(
        filters=8, kernel=[3, 3], stride=[1, 1], padding=[1, 1], groups=1, bias=True, dilation=[1, 1]
    )
    assert spec.layers[3]["params"] == dict(kernel=[2, 2], stride=[2, 2], padding=[0, 0])
    assert [layer["name"] for layer in spec.layers][:3] == ["conv_1", "batchnorm_1", "relu_1"]
    assert spec.param_count == 80 + 16 + 1290 and spec.output == "softmax" and spec.name == "custom"
    assert resolve_spec({"name": "d", "layers": DIGITS}, (1, 8, 8), 10).layers == spec.layers


def test_names_input_layer_and_explicit_output() -> None:
    layers = [
        {"input": {"channels": 1, "size": [8, 6]}},
        {"conv": {"filters": 4, "name": "stem", "act": "leaky_relu"}},
        "flatten",
        {"dense": {"units": "classes", "name": "head"}},
    ]
    spec = resolve_spec({"output": "sigmoid", "layers": layers}, num_classes=2)
    assert spec.in_shape == (1, 8, 6) and spec.num_classes == 2 and spec.output == "sigmoid"
    assert [layer["name"] for layer in spec.layers] == ["stem", "stem_leaky_relu", "flatten_1", "head", "sigmoid_1"]
    assert spec.layers[0]["out_shape"] == [4, 6, 4] and spec.layers[3]["out_shape"] == [1]
    assert spec.layers[1]["params"] == {"slope": 0.01}


def test_same_padding_with_stride_gives_ceil() -> None:
    layers = [{"conv": {"filters": 2, "kernel": 3, "stride": 2, "padding": "same"}}, "global_avgpool"]
    spec = resolve_spec(layers + [{"dense": {"units": "classes"}}, "softmax"], (3, 7, 7), 4)
    assert spec.layers[0]["out_shape"] == [2, 4, 4] and spec.layers[1]["out_shape"] == [2]


def test_maxout_groups_dilation_and_avgpool() -> None:
    layers = [
        {"conv": {"filters": 8, "kernel": [3, 5], "groups": 2, "dilation": 2, "padding": "same", "bias": False}},
        {"maxout": {"pieces": 4}},
        {"avgpool": {"kernel": 3, "stride": 1, "padding": 1}},
        {"dropout": {"rate": 0.25}},
        "flatten",
        {"dense": {"units": "classes", "act": "softmax"}},
    ]
    spec = resolve_spec(layers, (4, 9, 9), 3)
    assert [layer["out_shape"] for layer in spec.layers[:3]] == [[8, 9, 9], [2, 9, 9], [2, 9, 9]]
    assert spec.layers[0]["param_count"] == 8 * 2 * 3 * 5
    assert spec.layers[0]["params"]["padding"] == [2, 4]


def test_residual_auto_identity_and_explicit_shortcut() -> None:
    body = [{"conv": {"filters": 8, "stride": 2, "padding": 1, "norm": "batchnorm", "act": "relu"}}]
    head = ["global_avgpool", {"dense": {"units": "classes"}}, "softmax"]
    spec = resolve_spec([{"residual": {"layers": body}}] + head, (4, 7, 7), 3)
    block = spec.layers[0]
    assert block["out_shape"] == [8, 4, 4] and block["params"]["act"] == "relu"
    assert [s["type"] for s in block["params"]["shortcut"]] == ["conv", "batchnorm"]
    assert block["params"]["shortcut"][0]["params"]["stride"] == [2, 2]
    assert block["params"]["shortcut"][0]["params"]["bias"] is False
    assert block["param_count"] == sum(
        x["param_count"] for x in block["params"]["layers"] + block["params"]["shortcut"]
    )
    same = [{"residual": {"layers": [{"conv": {"filters": 4, "padding": "same"}}], "act": "none"}}] + head
    assert resolve_spec(same, (4, 7, 7), 3).layers[0]["params"]["shortcut"] == []
    explicit = [
        {
            "residual": {
                "layers": body,
                "shortcut": [{"avgpool": {"kernel": 2, "padding": 1}}, {"conv": {"filters": 8, "kernel": 1}}],
            }
        }
    ]
    assert resolve_spec(explicit + head, (4, 7, 7), 3).layers[0]["params"]["shortcut"][1]["out_shape"] == [8, 4, 4]


def test_yaml_round_trip_is_byte_exact(tmp_path: Path) -> None:
    for name in MODELS.names():
        spec = resolve_spec(name, (3, 32, 32), 10)
        spec.to_yaml(tmp_path / "a.yaml")
        again = ModelSpec.from_dict(load_spec_file(tmp_path / "a.yaml"))
        again.to_yaml(tmp_path / "b.yaml")
        assert (tmp_path / "a.yaml").read_bytes() == (tmp_path / "b.yaml").read_bytes()
        assert again == spec
        assert resolve_spec(tmp_path / "a.yaml", (3, 32, 32), 10) == spec


def test_files_json_and_init(tmp_path: Path) -> None:
    path = tmp_path / "net.json"
    path.write_text(json.dumps({"init": "he", "layers": DIGITS}))
    spec = resolve_spec(str(path), (1, 8, 8), 10)
    assert spec.name == "net" and spec.init == "he" and spec.to_dict()["init"] == "he"
    (tmp_path / "list.yml").write_text("- flatten\n- dense: {units: classes}\n- softmax\n")
    assert types(resolve_spec(tmp_path / "list.yml", (1, 2, 2), 3)) == ["flatten", "dense", "softmax"]


def test_model_spec_passthrough() -> None:
    spec = resolve_spec(DIGITS, (1, 8, 8), 10)
    assert resolve_spec(spec) is spec and resolve_spec(spec, (1, 8, 8), 10) is spec
    with pytest.raises(ConfigError, match=r"^in_shape: the spec expects input 1x8x8 but the data is 1x9x9"):
        resolve_spec(spec, (1, 9, 9), 10)


CONV = {"conv": {"filters": 4}}
HEAD = ["flatten", {"dense": {"units": "classes"}}, "softmax"]
ERRORS = [
    ([{"convv": {"filters": 4}}, *HEAD], r"unknown layer 'convv' \(layer 1\); did you mean 'conv'\?"),
    ([CONV, "relu", "flaten", *HEAD], r"unknown layer 'flaten' \(layer 3\); did you mean 'flatten'\?"),
    (
        [{"conv": {"filter": 4}}, *HEAD],
        r"layer 1 conv: unknown parameter 'filter'; did you mean 'filters'\? "
        r"valid: filters, kernel, stride, padding, groups, bias, dilation, act, norm, name",
    ),
    ([{"conv": {}}, *HEAD], r"layer 1 conv: missing parameter 'filters'"),
    ([{"conv": {"filters": 0}}, *HEAD], r"layer 1 conv: filters must be a positive integer, not 0"),
    ([{"conv": {"filters": -3}}, *HEAD], r"layer 1 conv: filters must be a positive integer, not -3"),
    ([{"conv": {"filters": 4, "stride": [1, 0]}}, *HEAD], r"layer 1 conv: stride must be a positive integer, not 0"),
    (
        [{"conv": {"filters": 4, "kernel": 9}}, *HEAD],
        r"layer 1 conv: kernel 9 does not fit input 8x8 \(padding 0; use padding: same or a smaller kernel\)",
    ),
    (
        [{"conv": {"filters": 4, "kernel": 2, "padding": "same"}}, *HEAD],
        r"layer 1 conv: padding 'same' needs an odd kernel, got 2; give padding as numbers",
    ),
    (
        [{"conv": {"filters": 4, "padding": "full"}}, *HEAD],
        r"layer 1 conv: padding must be an integer, \[height, width\], 'same' or 'valid', not 'full'",
    ),
    (
        [{"conv": {"filters": 4, "groups": 2}}, *HEAD],
        r"layer 1 conv: input channels 3 not divisible by groups 2 \(input 3x8x8\)",
    ),
    (
        [{"conv": {"filters": 4, "bias": "yes"}}, *HEAD],
        r"layer 1 conv: bias must be true or false, not 'yes'",
    ),
    (
        [{"conv": {"filters": 4, "padding": "same"}}, {"maxpool": {"kernel": 2}}] * 3
        + [{"maxpool": {"kernel": 2, "name": "p4"}}, *HEAD],
        r"layer 7 maxpool 'p4': kernel 2 does not fit input 1x1 \(too many pools for 8x8 input\?\)",
    ),
    (
        [{"maxpool": {"kernel": 2, "padding": 2}}, *HEAD],
        r"layer 1 maxpool: padding 2 is more than half the kernel 2",
    ),
    ([{"maxout": {"pieces": 2}}, *HEAD], r"layer 1 maxout: channels 3 not divisible by pieces 2 \(input 3x8x8\)"),
    ([{"dropout": {"rate": 1.0}}, *HEAD], r"layer 1 dropout: rate must be a number in \[0.0, 1.0\), not 1.0"),
    (
        [CONV, {"dense": {"units": "classes"}}, "softmax"],
        r"layer 2 dense: input is a 4x6x6 feature map; add a flatten layer before it",
    ),
    ([CONV, "flatten", CONV, *HEAD], r"layer 3 conv: needs a CxHxW feature map, but its input is a vector of 144"),
    ([CONV, "flatten", {"dense": {"units": 10}}], r"missing output layer: end the layers with softmax"),
    (
        [CONV, "softmax"],
        r"layer 2 softmax: input is a 4x6x6 feature map; add flatten \(or global_avgpool\) and a dense layer",
    ),
    (
        [CONV, "flatten", {"dense": {"units": 7}}, "softmax"],
        r"layer 4 softmax: input has 7 units but there are 10 classes; use dense units: classes",
    ),
    ([CONV, "classification", *HEAD], r"layer 2 classification: classification must be the last layer"),
    (
        [CONV, "flatten", {"dense": {"units": "classes", "act": "sigmoid"}}],
        r"output sigmoid is binary \(one unit\) but there are 10 classes; use softmax",
    ),
    (
        [{"conv": {"filters": 4, "act": "rleu"}}, *HEAD],
        r"layer 1 conv: unknown activation 'rleu'; did you mean 'relu'\?",
    ),
    (
        [{"conv": {"filters": 4, "name": "a"}}, {"conv": {"filters": 4, "name": "a"}}, *HEAD],
        r"layer name 'a' is used twice",
    ),
    ([CONV, {"input": {"channels": 3, "size": 8}}, *HEAD], r"layer 2 input: input must be the first layer of the spec"),
    (
        [{"input": {"channels": 1, "size": 8}}, CONV, *HEAD],
        r"layer 1 input: the spec expects input 1x8x8 but the data is 3x8x8; change the image size/channels",
    ),
    (
        [{"residual": {"layers": [{"conv": {"filters": 4, "padding": 1}}], "shortcut": "identity"}}, *HEAD],
        r"layer 1 residual: identity shortcut gives 3x8x8 but the body gives 4x8x8; use shortcut: auto",
    ),
    (
        [{"residual": {"layers": [CONV, {"convv": {}}]}}, *HEAD],
        r"unknown layer 'convv' \(layer 1 residual, body layer 2\); did you mean 'conv'\?",
    ),
    (
        [{"residual": {"layers": [{"conv": {"filters": 0}}]}}, *HEAD],
        r"layer 1 residual, body layer 1 conv: filters must be a positive integer, not 0",
    ),
    (
        [{"residual": {"layers": [CONV, "flatten"]}}, *HEAD],
        r"layer 1 residual: shortcut: auto cannot project input 3x8x8 to the body's output 144 with a 1x1 conv",
    ),
    ([42, *HEAD], r"layer 1: a layer is a name like relu or a one-key mapping like \{conv: \{filters: 8\}\}, not 42"),
    ([{"conv": {"filters": 4}, "relu": {}}, *HEAD], r"layer 1: a layer is a name like relu or a one-key mapping"),
]


@pytest.mark.parametrize("layers,message", ERRORS, ids=[m[:40] for _, m in ERRORS])
def test_validation_errors(layers: list, message: str) -> None:
    with pytest.raises(ConfigError, match=f"^{message}") as info:
        resolve_spec(layers, (3, 8, 8), 10)
    assert "\n" not in str(info.value)


def test_top_level_errors() -> None:
    with pytest.raises(ConfigError, match=r"^unknown spec key 'layer'; did you mean 'layers'\?"):
        resolve_spec({"layer": HEAD}, (3, 8, 8), 10)
    with pytest.raises(ConfigError, match=r"^the spec: layers must be a non-empty list of layers$"):
        resolve_spec({"layers": []}, (3, 8, 8), 10)
    with pytest.raises(ConfigError, match=r"^output must be softmax or sigmoid, not 'tanh'$"):
        resolve_spec({"output": "tanh", "layers": HEAD}, (3, 8, 8), 10)
    with pytest.raises(ConfigError, match=r"^output: sigmoid but the last layer is softmax; make them agree$"):
        resolve_spec({"output": "sigmoid", "layers": HEAD}, (3, 8, 8), 2)
    with pytest.raises(ConfigError, match=r"^init must be default, he, glorot or dirac, not 'xavier'$"):
        resolve_spec({"init": "xavier", "layers": HEAD}, (3, 8, 8), 10)
    with pytest.raises(ConfigError, match=r"^no input shape: pass in_shape or start the layers with input"):
        resolve_spec(HEAD, num_classes=10)
    with pytest.raises(ConfigError, match=r"^layer 2 dense: units: classes needs the number of classes"):
        resolve_spec(HEAD, (3, 8, 8))
    with pytest.raises(ConfigError, match=r"^num_classes must be at least 2"):
        resolve_spec(HEAD, (3, 8, 8), 1)
    with pytest.raises(ConfigError, match=r"^a model spec is a zoo name, a .yaml/.json path, a dict or a list"):
        resolve_spec(3, (3, 8, 8), 10)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"^model options \(binary\) apply only to zoo models"):
        resolve_spec(HEAD, (3, 8, 8), 10, binary=True)


def test_file_errors(tmp_path: Path) -> None:
    from convforge.errors import ConvforgeError

    with pytest.raises(ConvforgeError, match=r"^file not found: .*missing.yaml; check the path$"):
        resolve_spec(tmp_path / "missing.yaml", (3, 8, 8), 10)
    (tmp_path / "bad.yaml").write_text("42\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: a spec file holds a mapping with layers: \[...\], not int$"):
        resolve_spec(str(tmp_path / "bad.yaml"), (3, 8, 8), 10)
