"""resolve_spec: any spec form -> a validated ModelSpec with every layer's shape and parameter count.

Steps: load (zoo name, file, dict, list) -> parse items and expand shorthands -> find the output -> infer shapes
layer by layer (each LayerKind validates its values against its input shape) -> check the output against the
classes -> name unnamed layers (``conv_1``, ``conv_2``, ... per type).
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from .._io import read_yaml
from ..errors import ConfigError
from . import _residual, _simple, _spatial  # noqa: F401  (importing registers the layer types)
from ._layer import LAYERS, OUTPUT_TYPES, Ctx, Shape, fmt_shape
from ._parse import Item, parse_list
from .spec import ModelSpec
from .zoo import MODELS, zoo_spec

TOP_KEYS = ("name", "output", "init", "layers", "in_shape", "num_classes", "param_count")
INITS = ("he", "glorot", "dirac")
SPEC_SUFFIXES = (".yaml", ".yml", ".json")


def load_spec_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML/JSON spec file into a raw spec dict (a bare list of layers becomes ``{layers: [...]}``)."""
    data = read_yaml(path)
    if isinstance(data, list):
        data = {"layers": data}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a spec file holds a mapping with layers: [...], not {type(data).__name__}")
    return {"name": Path(path).stem, **data}


def _load(spec: Any, in_shape: Shape | None, num_classes: int | None, options: dict) -> dict[str, Any]:
    is_file = isinstance(spec, Path) or (
        isinstance(spec, str) and (spec.lower().endswith(SPEC_SUFFIXES) or Path(spec).is_file())
    )
    if options and (is_file or not isinstance(spec, str)):
        raise ConfigError(f"model options ({', '.join(options)}) apply only to zoo models like 'resnet18'")
    if is_file:
        return load_spec_file(spec)
    if isinstance(spec, str):
        if spec not in MODELS:
            try:
                MODELS.get(spec)
            except ConfigError as e:
                raise ConfigError(f"{e} (or give the path of a .yaml/.json spec)") from None
        if in_shape is None or num_classes is None:
            raise ConfigError(f"model '{spec}' adapts to the data: pass in_shape and num_classes")
        return {"name": spec, **zoo_spec(spec, tuple(in_shape), num_classes, **options)}
    if isinstance(spec, list):
        return {"name": "custom", "layers": spec}
    if isinstance(spec, dict):
        return {"name": "custom", **spec}
    raise ConfigError(
        f"a model spec is a zoo name, a .yaml/.json path, a dict or a list of layers, not {type(spec).__name__}"
    )


def resolve_spec(
    spec: dict | list | str | Path | ModelSpec,
    in_shape: tuple[int, int, int] | None = None,
    num_classes: int | None = None,
    **options: Any,
) -> ModelSpec:
    """Validate a spec and infer its shapes. ``options`` go to a zoo model (e.g. ``binary=False``)."""
    if isinstance(spec, ModelSpec):
        same = (in_shape is None or tuple(in_shape) == spec.in_shape) and num_classes in (None, spec.num_classes)
        if same and not options:
            return spec
        spec = spec.to_dict()
    raw = _load(spec, in_shape, num_classes, options)
    for key in raw:
        if key not in TOP_KEYS:
            close = difflib.get_close_matches(str(key), TOP_KEYS, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise ConfigError(f"unknown spec key '{key}'; {hint}valid: {', '.join(TOP_KEYS)}")
    return _Resolver(raw, in_shape, num_classes).run()


def _shape_arg(value: Any, what: str) -> Shape:
    ok = isinstance(value, (list, tuple)) and len(value) == 3
    if not ok or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value):
        raise ConfigError(f"{what} must be [channels, height, width] (positive integers), not {value!r}")
    return tuple(value)


def _input_item_shape(item: Item) -> Shape:
    channels, size = item.params["channels"], item.params["size"]
    size = [size, size] if isinstance(size, int) else size
    try:
        return _shape_arg([channels, *size] if isinstance(size, list) else None, "input")
    except ConfigError:
        raise ConfigError(
            f"{item.where}: give channels: C and size: S or [H, W] (positive integers), "
            f"not channels {channels!r}, size {item.params['size']!r}"
        ) from None


class _Resolver:
    """One resolution: the model-wide facts (input shape, class units) that every layer may need."""

    def __init__(self, raw: dict[str, Any], in_shape: Shape | None, num_classes: int | None) -> None:
        self.raw = raw
        self.in_shape = None if in_shape is None else _shape_arg(in_shape, "in_shape")
        num_classes = raw.get("num_classes") if num_classes is None else num_classes  # arg, else the file's
        self.num_classes = num_classes
        if num_classes is not None and (isinstance(num_classes, bool) or not isinstance(num_classes, int)):
            raise ConfigError(f"num_classes must be an integer, not {num_classes!r}")
        if num_classes is not None and num_classes < 2:
            raise ConfigError(f"num_classes must be at least 2 (a binary problem has 2), not {num_classes}")
        self.class_units: int | None = None

    def run(self) -> ModelSpec:
        items = parse_list(self.raw.get("layers"))
        items = self._take_input(items)
        output, n_out = self._find_output(items)
        layers, _ = self.resolve_items(items, self.in_shape)
        first_out = len(layers) - n_out
        pre_shape = layers[first_out - 1]["out_shape"] if first_out else list(self.in_shape)
        num_classes = self._check_output(items[first_out], pre_shape, output)
        _name_layers(layers)
        init = self.raw.get("init")
        if init not in (None, "default", *INITS):
            raise ConfigError(f"init must be default, he, glorot or dirac, not {init!r}")
        name = self.raw.get("name")
        if not isinstance(name, str) or not name:
            raise ConfigError(f"the spec name must be a non-empty string, not {name!r}")
        return ModelSpec(name, self.in_shape, num_classes, output, layers, None if init == "default" else init)

    def _take_input(self, items: list[Item]) -> list[Item]:
        """Settle the input shape from the argument, an `input` first item, or a resolved spec's in_shape."""
        declared, where = None, None
        if items[0].type == "input":
            declared, where = _input_item_shape(items[0]), items[0].where
            items = items[1:]
            if not items:
                raise ConfigError("the spec has only an input layer; add layers after it")
        elif self.raw.get("in_shape") is not None:
            declared, where = _shape_arg(self.raw["in_shape"], "in_shape"), "in_shape"
        if declared is not None and self.in_shape is not None and declared != self.in_shape:
            raise ConfigError(
                f"{where}: the spec expects input {fmt_shape(declared)} but the data is {fmt_shape(self.in_shape)}; "
                "change the image size/channels of the data or the spec"
            )
        self.in_shape = self.in_shape or declared
        if self.in_shape is None:
            raise ConfigError("no input shape: pass in_shape or start the layers with input: {channels, size}")
        return items

    def _find_output(self, items: list[Item]) -> tuple[str, int]:
        """The output kind and how many trailing output layers there are (appending one if `output:` asks)."""
        n = 0
        while n < len(items) and items[-n - 1].type in OUTPUT_TYPES:
            n += 1
        for item in items[: len(items) - n]:
            if item.type == "classification":
                raise ConfigError(f"{item.where}: classification must be the last layer")
        kinds = {OUTPUT_TYPES[i.type] for i in items[len(items) - n :]}
        declared = self.raw.get("output")
        if declared not in (None, "softmax", "sigmoid"):
            raise ConfigError(f"output must be softmax or sigmoid, not {declared!r}")
        if len(kinds) > 1:
            raise ConfigError(f"{items[-1].where}: the last layers mix softmax and sigmoid outputs; keep one")
        if kinds and declared and kinds != {declared}:
            raise ConfigError(f"output: {declared} but the last layer is {items[-1].type}; make them agree")
        if not kinds and not declared:
            raise ConfigError(
                "missing output layer: end the layers with softmax (or classification) or sigmoid, "
                "or set output: softmax|sigmoid"
            )
        if not kinds:
            items.append(Item(declared, {}, None, items[-1].pos + 1))
            n = 1
        output = declared or kinds.pop()
        if output == "sigmoid" and self.num_classes not in (None, 2):
            raise ConfigError(
                f"output sigmoid is binary (one unit) but there are {self.num_classes} classes; use softmax"
            )
        self.class_units = 1 if output == "sigmoid" else self.num_classes
        return output, n

    def _check_output(self, item: Item, shape: list[int], output: str) -> int:
        """Check the vector entering the output layers; return the number of classes."""
        if len(shape) != 1:
            raise ConfigError(
                f"{item.where}: input is a {fmt_shape(shape)} feature map; "
                "add flatten (or global_avgpool) and a dense layer before it"
            )
        units = shape[0]
        if output == "sigmoid":
            if units != 1:
                raise ConfigError(f"{item.where}: a sigmoid output needs 1 unit, got {units}; use dense units: classes")
            return 2
        if self.num_classes is not None and units != self.num_classes:
            raise ConfigError(
                f"{item.where}: input has {units} units but there are {self.num_classes} classes; "
                "use dense units: classes"
            )
        if units < 2:
            raise ConfigError(f"{item.where}: a softmax output needs at least 2 units, got {units}; use sigmoid")
        return units

    def resolve_items(self, items: list[Item], shape: Shape) -> tuple[list[dict[str, Any]], Shape]:
        layers = []
        for item in items:
            layer = self._resolve_one(item, shape)
            layers.append(layer)
            shape = tuple(layer["out_shape"])
        return layers, shape

    def resolve_raw(self, raws: Any, shape: Shape, prefix: str) -> tuple[list[dict[str, Any]], Shape]:
        """Nested lists (residual body/shortcut): no input or classification layers there."""
        items = parse_list(raws, prefix + " ")
        for item in items:
            if item.type in ("input", "classification"):
                raise ConfigError(f"{item.where}: not allowed inside a residual block")
        return self.resolve_items(items, shape)

    def _resolve_one(self, item: Item, shape: Shape) -> dict[str, Any]:
        kind = LAYERS.get(item.type)
        ctx = Ctx(item.where, self.in_shape, self.class_units, self.resolve_raw)
        params = kind.check({**kind.defaults, **item.params}, shape, ctx)
        out = kind.out_shape(params, shape)
        count = kind.count(params, shape)
        return dict(type=item.type, name=item.name, params=params, out_shape=list(out), param_count=count)


def _walk(layers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """All layers depth-first, residual bodies and shortcuts included."""
    out = []
    for layer in layers:
        out.append(layer)
        if layer["type"] == "residual":
            out += _walk(layer["params"]["layers"]) + _walk(layer["params"]["shortcut"])
    return out


def _name_layers(layers: list[dict[str, Any]]) -> None:
    """Keep the user's names (unique), name the rest ``{type}_{n}`` per type in order."""
    everything = _walk(layers)
    taken: set[str] = set()
    for layer in everything:
        if layer["name"] is not None:
            if layer["name"] in taken:
                raise ConfigError(f"layer name '{layer['name']}' is used twice; names must be unique")
            taken.add(layer["name"])
    counters: dict[str, int] = {}
    for layer in everything:
        while layer["name"] is None:
            counters[layer["type"]] = counters.get(layer["type"], 0) + 1
            candidate = f"{layer['type']}_{counters[layer['type']]}"
            if candidate not in taken:
                layer["name"] = candidate
                taken.add(candidate)
