"""Every zoo network resolves, builds and trains one step on the input sizes it claims; counts match references."""

from __future__ import annotations

import pytest
import torch
import torchvision

import convforge.recipes  # noqa: F401  registers the fast recipes' networks: the same list in any test order
from convforge.errors import ConfigError
from convforge.models import MODELS, build_model, describe, resolve_spec

SMALL = [(1, 8, 8), (1, 28, 28), (3, 32, 32), (3, 64, 64)]
BIG = {"resnet18", "alexnet"}  # also checked at 128 px (ImageNet stems)
# recipe networks are built for one input size each (the recipe fixes it)
RECIPE_SHAPES = {
    "mnist-fast": (1, 28, 28),
    "fashion-mnist-fast": (1, 28, 28),
    "cifar10-fast": (3, 32, 32),
    "folder-fast": (3, 128, 128),
}
CASES = [(name, shape) for name in MODELS.names() if name not in RECIPE_SHAPES for shape in SMALL]
CASES += [(name, (3, 128, 128)) for name in sorted(BIG)]
CASES += sorted(RECIPE_SHAPES.items())


@pytest.mark.parametrize("name,shape", CASES, ids=[f"{n}-{'x'.join(map(str, s))}" for n, s in CASES])
def test_zoo_forward_backward(name: str, shape: tuple[int, int, int]) -> None:
    torch.manual_seed(0)
    num_classes = 3
    spec = resolve_spec(name, in_shape=shape, num_classes=num_classes)
    model = build_model(spec)
    assert spec.param_count == sum(p.numel() for p in model.parameters())
    logits = model(torch.randn(2, *shape))
    assert logits.shape == (2, num_classes)
    logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)  # (a fixed BN scale is not)


def test_binary_simple_cnn_has_one_unit() -> None:
    spec = resolve_spec("simple-cnn", (3, 64, 64), 2)
    assert spec.output == "sigmoid" and spec.num_classes == 2
    assert build_model(spec)(torch.randn(2, 3, 64, 64)).shape == (2, 1)
    spec = resolve_spec("simple-cnn", (3, 64, 64), 2, binary=False)
    assert spec.output == "softmax" and spec.layers[-2]["out_shape"] == [2]
    with pytest.raises(ConfigError, match=r"^model 'simple-cnn': binary=True needs 2 classes, not 5$"):
        resolve_spec("simple-cnn", (3, 64, 64), 5, binary=True)


@pytest.mark.parametrize(
    "name,shape,classes,options,expected",
    [
        ("mlp", (1, 28, 28), 10, {}, 101_770),  # Keras Fashion-MNIST tutorial's model.summary()
        ("lenet5", (1, 28, 28), 10, {}, 61_706),
        ("lenet5", (3, 32, 32), 10, {"classic": True}, 62_006),
        ("resnet18", (3, 32, 32), 10, {}, 11_173_962),  # the usual CIFAR ResNet-18 (3x3 stem)
        ("digits-cnn", (1, 28, 28), 10, {}, 21_690),
    ],
)
def test_known_param_counts(name: str, shape: tuple, classes: int, options: dict, expected: int) -> None:
    assert resolve_spec(name, shape, classes, **options).param_count == expected


@pytest.mark.parametrize(
    "name,reference,options,expected",
    [
        ("resnet18", torchvision.models.resnet18, {}, 11_689_512),
        ("alexnet", torchvision.models.alexnet, {}, 61_100_840),
        ("vgg11", torchvision.models.vgg11, {"batch_norm": False}, 132_863_336),
        ("vgg11", torchvision.models.vgg11_bn, {"batch_norm": True}, 132_868_840),
    ],
)
def test_imagenet_counts_match_torchvision(name: str, reference, options: dict, expected: int) -> None:
    spec = resolve_spec(name, (3, 224, 224), 1000, **options)
    with torch.device("meta"):  # no memory, no init time: only shapes
        ours = sum(p.numel() for p in build_model(spec).parameters())
        theirs = sum(p.numel() for p in reference().parameters())
    assert spec.param_count == ours == theirs == expected


def test_resnet18_state_dict_shapes_match_torchvision_in_order() -> None:
    spec = resolve_spec("resnet18", (3, 224, 224), 1000)
    with torch.device("meta"):
        ours = [tuple(v.shape) for v in build_model(spec).state_dict().values()]
        theirs = [tuple(v.shape) for v in torchvision.models.resnet18().state_dict().values()]
    assert ours == theirs


def test_variants_and_stems() -> None:
    assert resolve_spec("alexnet", (3, 32, 32), 10).layers[0]["params"]["kernel"] == [5, 5]
    assert resolve_spec("alexnet", (3, 128, 128), 10).layers[0]["params"]["kernel"] == [11, 11]
    assert resolve_spec("alexnet", (3, 128, 128), 10, variant="cifar").layers[0]["params"]["stride"] == [1, 1]
    assert resolve_spec("resnet18", (3, 64, 64), 10).layers[0]["params"]["kernel"] == [3, 3]
    assert resolve_spec("resnet18", (3, 96, 96), 10).layers[0]["params"]["kernel"] == [7, 7]
    cifar_vgg = resolve_spec("vgg11", (3, 32, 32), 10)
    assert [layer["type"] for layer in cifar_vgg.layers[-3:]] == ["flatten", "dense", "softmax"]
    assert cifar_vgg.layers[-3]["out_shape"] == [512]


def test_digits_cnn_skips_pools_that_do_not_fit() -> None:
    def pools(shape: tuple[int, int, int]) -> list[list[int]]:
        layers = resolve_spec("digits-cnn", shape, 10).layers
        return [layer["out_shape"] for layer in layers if layer["type"] == "maxpool"]

    assert pools((1, 8, 8)) == [[8, 4, 4], [16, 2, 2]]
    assert pools((1, 28, 28)) == [[8, 14, 14], [16, 7, 7]]


def test_zoo_options_and_describe() -> None:
    with pytest.raises(ConfigError, match=r"^unknown option 'depth' for model 'vgg11'; valid options: batch_norm"):
        resolve_spec("vgg11", (3, 32, 32), 10, depth=3)
    with pytest.raises(ConfigError, match=r"^model 'resnet18': variant must be one of imagenet, cifar, not 'x'$"):
        resolve_spec("resnet18", (3, 32, 32), 10, variant="x")
    with pytest.raises(ConfigError, match=r"^unknown model 'resnet19'; did you mean 'resnet18'"):
        resolve_spec("resnet19", (3, 32, 32), 10)
    with pytest.raises(ConfigError, match=r"^model 'mlp' adapts to the data: pass in_shape and num_classes$"):
        resolve_spec("mlp")
    for name in MODELS.names():
        assert describe(name) and "\n" not in describe(name)


@pytest.mark.parametrize("name,shape", [(n, s) for n, s in CASES if s != (1, 8, 8)])
def test_resolved_spec_round_trips_to_the_same_module(name: str, shape: tuple[int, int, int]) -> None:
    """RUN/spec.yaml is read back with from_dict: same layers, state-dict keys and shapes (codegen relies on it)."""
    from convforge.models import ModelSpec

    spec = resolve_spec(name, in_shape=shape, num_classes=3)
    again = ModelSpec.from_dict(spec.to_dict())
    assert again.to_dict() == spec.to_dict()
    a, b = build_model(spec).state_dict(), build_model(again).state_dict()
    assert [(k, v.shape) for k, v in a.items()] == [(k, v.shape) for k, v in b.items()]
