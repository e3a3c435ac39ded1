"""The fp16/bf16 NHWC forward pass without a GPU: the launch list exactly as network.cu gets it (buffers, packed
weight offsets, NhwcShape/PoolShape arguments in struct order) is executed in numpy with the kernels' index
formulas (kernels/conv_nhwc.cuh, nhwc_ops.cuh) and compared with PyTorch; plus layout and tile choices."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from convforge._io import read_yaml
from convforge.cudagen import generate
from convforge.cudagen._random_run import ZOO_SHAPES, make_run
from convforge.cudagen.cudnn_nhwc import plan_cudnn
from convforge.cudagen.emit import nhwc_context, pack_weights
from convforge.cudagen.nhwc import AUTO_TILES, TILE_ENV, TILES, choose_tiles, forced_tile, make_nhwc
from convforge.cudagen.plan import make_plan
from convforge.cudagen.verify import synthetic_images
from convforge.errors import ConvforgeError
from convforge.models import MODELS

F = torch.nn.functional
ACTS = {0: lambda v, s: v, 1: F.relu, 2: F.leaky_relu, 3: lambda v, s: torch.sigmoid(v)}
ACTS.update({1: lambda v, s: F.relu(v), 4: lambda v, s: torch.tanh(v), 5: lambda v, s: F.gelu(v)})
SHAPES = {"alexnet": ((3, 32, 32), 10), "vgg11": ((3, 32, 32), 10)}  # small weights; alexnet flattens 256x3x3


def _round(a: np.ndarray, precision: str) -> np.ndarray:
    """Storage rounding of T: fp16, bf16 (round to nearest even on the top 16 bits), or none."""
    if precision == "fp16":
        return a.astype(np.float16).astype(np.float64)
    if precision == "bf16":
        bits = a.astype(np.float32).view(np.uint32)
        bits = (bits + np.uint32(0x7FFF) + ((bits >> 16) & 1)) & np.uint32(0xFFFF0000)  # finite values only
        return bits.view(np.float32).astype(np.float64)
    return a


def _act(v: np.ndarray, act: int, slope: float) -> np.ndarray:
    fn = ACTS[act]
    return fn(torch.from_numpy(v), slope).numpy() if act != 2 else F.leaky_relu(torch.from_numpy(v), slope).numpy()


def _repack(w: np.ndarray, p: dict) -> np.ndarray:
    """repack_weights_kernel's dst[m][k] = src[m][c][ky][kx], k = (ky * kw + kx) * cs + c, as a transpose: rows
    ordered (ky, kx, c), channels padded to cs, rows to kp, output channels to `rows`, with zeros."""
    src = w.reshape(p["cout"], p["c"], p["kh"], p["kw"]).transpose(0, 2, 3, 1)
    dst = np.zeros((p["rows"], p["kh"], p["kw"], p["cs"]))
    dst[: p["cout"], :, :, : p["c"]] = src
    return np.pad(dst.reshape(p["rows"], -1), ((0, 0), (0, p["kp"] - p["kh"] * p["kw"] * p["cs"])))


class Machine:
    """Device memory of the generated network: fp32 weights W, packed weights P, activation slots A(i), out_."""

    def __init__(self, plan, ctx, n: int, precision: str):
        blob, _ = pack_weights(plan)
        self.W = np.frombuffer(blob, dtype="<f4").astype(np.float64)
        self.P = np.zeros(ctx["packed_elems"])
        for p in ctx["packs"]:
            size = p["rows"] * p["kp"]
            w = self.W[p["src"] : p["src"] + p["cout"] * p["c"] * p["kh"] * p["kw"]]
            self.P[p["offset"] : p["offset"] + size] = _round(_repack(w, p), precision).ravel()
        self.mem: dict[str, np.ndarray] = {}
        self.n, self.precision = n, precision

    @staticmethod
    def key(expr: str) -> str:
        """A(i) (T) and slots_[i] (fp32) are the same buffer i."""
        return expr[2:-1] if expr.startswith("A(") else expr[7:-1] if expr.startswith("slots_[") else expr

    def ptr(self, expr: str, count: int | None = None) -> np.ndarray | None:
        if expr == "nullptr":
            return None
        if expr.startswith(("W + ", "P + ")):
            base = self.W if expr[0] == "W" else self.P
            off = int(expr[4:])
            return base[off:] if count is None else base[off : off + count]
        return self.mem[self.key(expr)][: self.n * count] if count else self.mem[self.key(expr)]

    def store(self, expr: str, value: np.ndarray) -> None:
        exact = expr == "out_" or expr.startswith("slots_[")  # fp32 output and logits
        self.mem[self.key(expr)] = value.ravel() if exact else _round(value.ravel(), self.precision)


def _conv(m: Machine, op: dict) -> None:
    (h, w, cs_in, cin_g, cout, cs_out, ho, wo, kh, kw, sh, sw, ph, pw, dh, dw, groups, K, Kp) = map(
        int, op["shape_args"].split(", ")
    )
    n = m.n
    x = m.ptr(op["x"], h * w * cs_in).reshape(n, h, w, cs_in)
    k = np.arange(K)
    tap, c = k // cin_g, k % cin_g
    iy = (np.arange(ho) * sh - ph)[:, None, None] + (tap // kw * dh)[None, None, :]
    ix = (np.arange(wo) * sw - pw)[None, :, None] + (tap % kw * dw)[None, None, :]
    ok = (iy >= 0) & (iy < h) & (ix >= 0) & (ix < w)
    mg = cs_out // groups
    wp = m.ptr(op["w"], cs_out * Kp).reshape(cs_out, Kp)
    out = np.zeros((n, ho, wo, cs_out))
    for g in range(groups):
        col = x[:, np.clip(iy, 0, h - 1), np.clip(ix, 0, w - 1), g * cin_g + c] * ok
        out[..., g * mg : (g + 1) * mg] = col @ wp[g * mg : (g + 1) * mg, :K].T
    bias = m.ptr(op["b"], cout)
    if op.get("bt", "nullptr") != "nullptr" and op["act"] == 1:  # cuDNN's fused bias + ReLU reads the T copy
        bias = m.ptr(op["bt"], cout)
    out[..., :cout] += 0 if bias is None else bias
    res = m.ptr(op["res"], ho * wo * cs_out)
    if res is not None:
        out += res.reshape(out.shape)
    out = _act(out, op["act"], float(op["slope"]))
    out[..., cout:] = 0
    m.store(op["y"], out)


def _pool(m: Machine, op: dict) -> None:
    cs, h, w, ho, wo, kh, kw, sh, sw, ph, pw = map(int, op["shape_args"].split(", "))
    x = m.ptr(op["x"], h * w * cs).reshape(m.n, h, w, cs)
    out = np.full((m.n, ho, wo, cs), -np.inf if op["is_max"] else 0.0)
    for oy in range(ho):
        for ox in range(wo):
            for ky in range(kh):
                for kx in range(kw):
                    iy, ix = oy * sh - ph + ky, ox * sw - pw + kx
                    if 0 <= iy < h and 0 <= ix < w:
                        v = x[:, iy, ix]
                        out[:, oy, ox] = np.maximum(out[:, oy, ox], v) if op["is_max"] else out[:, oy, ox] + v
    out = out if op["is_max"] else out / (kh * kw)
    m.store(op["y"], _act(out, op["act"], float(op["slope"])))


def _other(m: Machine, op: dict) -> None:
    kind, n, cs_in, hw, c = op["kind"], m.n, op["cs_in"], op["hw"], op["c"]
    x = m.ptr(op["x"], hw * cs_in).reshape(n, hw, cs_in)
    if kind == "global_pool":
        out = x.max(1) if op["is_max"] else x.mean(1)
        out[:, c:] = 0
    elif kind == "scale_shift":
        scale, shift = m.ptr(op["scale"], c), m.ptr(op["shift"], c)
        out = x[..., :c] * scale + shift if scale is not None else x[..., :c]
        out = np.concatenate([_act(out, op["act"], float(op["slope"])), np.zeros((n, hw, cs_in - c))], 2)
    elif kind == "add":
        out = _act(x + m.ptr(op["x2"], hw * cs_in).reshape(x.shape), op["act"], float(op["slope"]))
    elif kind == "maxout":
        out = np.zeros((n, hw, op["cs"]))
        out[..., : op["cout"]] = x[..., : op["cout"] * op["pieces"]].reshape(n, hw, op["cout"], -1).max(3)
    else:  # softmax / sigmoid: element i of the NCHW flatten is at pixel i % hw, channel i / hw
        i = np.arange(op["cols"])
        v = x[:, i % hw, i // hw]
        v = 1 / (1 + np.exp(-v)) if op["sigmoid"] else np.exp(v - v.max(1, keepdims=True))
        v = v if op["sigmoid"] else v / v.sum(1, keepdims=True)
        out = np.zeros((n, op["ys"]))
        out[:, : op["cols"]] = v
    m.store(op["y"], out)


def run_nhwc(
    run, images: np.ndarray, precision: str = "none", max_batch: int = 64, backend: str = "native",
    stem_native: bool = False, logits: bool = False,
) -> tuple[np.ndarray, dict]:  # fmt: skip
    """Probabilities of the NHWC launch list of network.cu, executed in float64 (rounding T stores to precision).
    backend cudnn: cuDNN's packing (cudnn_nhwc.py); its convolutions and cuBLAS's GEMMs compute what the native
    kernels do, so _conv runs them too; stem_native: the launch CF_CUDNN_STEM=native selects; logits: the output
    layer's input (NCHW-flatten order) instead of the probabilities."""
    spec = read_yaml(run.file("spec.yaml"))
    pre = run.preprocessing
    plan = make_plan(spec, run.state_dict(), (pre["channels"], pre["height"], pre["width"]), run.output)
    nplan, why = make_nhwc(plan, max_batch)
    assert nplan is not None, why
    if backend == "cudnn":
        plan_cudnn(nplan)
    offsets = {e["name"]: e["offset"] for e in pack_weights(plan)[1]}
    ctx = nhwc_context(plan, nplan, offsets, "bf16" if precision == "bf16" else "fp16")
    x = run.normalize(torch.from_numpy(images)).double().numpy()
    m = Machine(plan, ctx, len(images), precision)
    x0 = ctx["x0"]
    if x0["s2d"]:
        nhwc = _nchw_to_s2d(x, x0["s2d"])
    else:
        nhwc = np.zeros((len(images), x0["hw"], x0["cs"]))
        nhwc[..., : x0["c"]] = x.reshape(len(images), x0["c"], x0["hw"]).transpose(0, 2, 1)
    m.store(f"A({x0['slot']})", nhwc)
    for op in ctx["nhwc_ops"]:
        if op.get("native") and stem_native:  # CF_CUDNN_STEM=native: the stem's native launch and packed weights
            op = dict(op, **op["native"])
        {"conv": _conv, "pool": _pool}.get(op["kind"], _other)(m, op)
    if logits:  # element i of the NCHW flatten is at pixel i % hw, channel i / hw
        last, i = ctx["nhwc_ops"][-1], np.arange(ctx["nhwc_ops"][-1]["cols"])
        y = m.ptr(last["x"]).reshape(len(images), last["hw"], last["cs_in"])
        return y[:, i % last["hw"], i // last["hw"]], ctx
    return m.mem["out_"].reshape(len(images), -1), ctx


def _nchw_to_s2d(x: np.ndarray, args: str) -> np.ndarray:
    """nchw_to_s2d_kernel's index formula (nhwc_ops.cuh) with the SpaceToDepthShape the emitter wrote."""
    c, h, w, s, ph, pw, hs, ws, cs = map(int, args.split(", "))
    ch = np.arange(cs)
    plane, dy, dx = ch // (s * s), ch % (s * s) // s, ch % s
    iy = np.arange(hs)[:, None, None] * s + dy - ph
    ix = np.arange(ws)[None, :, None] * s + dx - pw
    inside = (plane < c) & (iy >= 0) & (iy < h) & (ix >= 0) & (ix < w)
    y = x[:, np.minimum(plane, c - 1), np.clip(iy, 0, h - 1), np.clip(ix, 0, w - 1)] * inside
    return y.reshape(len(x), hs * ws, cs)


def _reference(run, images: np.ndarray, logits: bool = False) -> np.ndarray:
    model = run.load_model("cpu").double().eval()
    with torch.no_grad():
        y = model(run.normalize(torch.from_numpy(images)).double()).flatten(1)
    return (y if logits else torch.sigmoid(y) if run.output == "sigmoid" else torch.softmax(y, 1)).numpy()


MIXED = {
    "layers": [
        {"conv": {"filters": 6, "kernel": 3, "padding": "same", "norm": "batchnorm", "act": "relu"}},
        {"maxpool": {"kernel": 2}},
        {"residual": {"layers": [{"conv": {"filters": 16, "kernel": 3, "padding": 1, "stride": 2}}, "batchnorm"]}},
        {"residual": {"layers": [{"conv": {"filters": 16, "kernel": 3, "padding": 1}}], "act": "leaky_relu"}},
        {"maxout": {"pieces": 2}},
        {"avgpool": {"kernel": 3, "stride": 2, "padding": 1}},
        "flatten",
        {"dense": {"units": 12, "act": "tanh"}},
        "batchnorm",
        {"dense": {"units": 16, "act": "gelu"}},
        {"dense": {"units": "classes"}},
        "softmax",
    ]
}
CASES = list(dict.fromkeys([*MODELS.names(), "cifar10-fast", "mixed"]))


@pytest.mark.parametrize("backend", ["native", "cudnn"])
@pytest.mark.parametrize("name", CASES)
def test_nhwc_launches_match_torch(tmp_path, name, backend):
    """No rounding of T: any wrong offset, shape argument, padding, flatten order or reused buffer shows up (cudnn:
    also in cuDNN's Kp = K weights and T biases)."""
    in_shape, classes = SHAPES.get(name, ZOO_SHAPES.get(name, ((1, 28, 28), 10)))
    run = make_run(tmp_path / "run", MIXED if name == "mixed" else name, in_shape=in_shape, num_classes=classes)
    images = synthetic_images(in_shape, 3)
    ours, _ = run_nhwc(run, images, backend=backend)
    np.testing.assert_allclose(ours, _reference(run, images), atol=1e-5)  # weights are stored fp32


# strided stems, rewritten space-to-depth (s2d.py): the zoo's ImageNet stems (resnet18 7x7/2, alexnet 11x11/4) at
# small sizes, and odd geometries: a zero row past the padded input and an input column no output reads (19 x 18 at
# 5x5/3), a kernel smaller than its stride on one channel (4 s2d channels padded to 8)
ODD_STEM = [{"conv": {"filters": 8, "kernel": 5, "stride": 3, "padding": 2, "norm": "batchnorm", "act": "relu"}}]
ODD_STEM += [{"conv": {"filters": 8, "kernel": 2, "stride": 3}}, "flatten", {"dense": {"units": "classes"}}, "softmax"]
TINY_STEM = [{"conv": {"filters": 8, "kernel": 1, "stride": 2}}, "flatten", {"dense": {"units": "classes"}}, "softmax"]
S2D_CASES = {"resnet18": ("resnet18", (3, 96, 96)), "alexnet": ("alexnet", (3, 67, 67))}
S2D_CASES.update({"5x5/3": ({"layers": ODD_STEM}, (3, 19, 18)), "1x1/2": ({"layers": TINY_STEM}, (1, 9, 9))})


S2D_VARIANTS = {"native": ("native", False), "cudnn": ("cudnn", False), "cudnn-stem-native": ("cudnn", True)}


@pytest.mark.parametrize("backend, stem_native", S2D_VARIANTS.values(), ids=S2D_VARIANTS)
@pytest.mark.parametrize("name", S2D_CASES)
def test_s2d_stem_launches_match_torch(tmp_path, name, backend, stem_native):
    """The input conversion into the s2d map (nchw_to_s2d's index formula), the rearranged and packed weights and
    the rewritten stem's shape match PyTorch's strided convolution; with cuDNN also its Kp = K packing and the
    native launch that CF_CUDNN_STEM=native selects, with weights of its own. Logits are compared: random resnet18's
    probabilities are one-hot whatever the input."""
    spec, in_shape = S2D_CASES[name]
    run = make_run(tmp_path / "run", spec, in_shape=in_shape)
    images = synthetic_images(in_shape, 2)
    ours, ctx = run_nhwc(run, images, backend=backend, stem_native=stem_native, logits=True)
    stem = ctx["nhwc_ops"][0]
    stride_pad = stem["shape_args"].split(", ")[10:14]
    assert ctx["x0"]["s2d"] and ctx["x0"]["cs"] % 8 == 0 and stride_pad == ["1", "1", "0", "0"]
    assert stem["path"] == backend and bool(stem["native"]) == (backend == "cudnn")
    ref = _reference(run, images, logits=True)
    np.testing.assert_allclose(ours, ref, atol=1e-6 * np.abs(ref).max())  # fp32 weights: about 1e-7 of the logits


# bf16 on vgg11 / cifar10-fast is left out: with 256 synthetic images this emulation reaches 1.6e-2 / 2.5e-2 (top-1
# 99.6% / 100%), and the fp32-NCHW path's rounding points (operands rounded at the MMA only) give 1.6e-2 / 2.3e-2
# (99.6% both): bf16's 8-bit mantissa, not the layout.
# resnet18 at 32 px is left out too: its random-weight probabilities are one-hot, insensitive to rounding.
ROUNDED = [("alexnet", "fp16"), ("alexnet", "bf16"), ("vgg11", "fp16"), ("cifar10-fast", "fp16")]
ROUNDED += [("simple-cnn", "bf16")]
ROUNDED = [(*case, "native") for case in ROUNDED] + [("alexnet", "bf16", "cudnn"), ("simple-cnn", "bf16", "cudnn")]


@pytest.mark.parametrize("name, precision, backend", ROUNDED)
def test_rounded_storage_within_tolerance(tmp_path, name, precision, backend):
    """T activations and weights (the kernels' only roundings besides fp32 accumulation; cudnn: also the T bias of
    the fused bias + ReLU) keep the probabilities within verify.py's tolerances of the fp32 model: 2e-2 max |diff|,
    99.9% top-1 agreement."""
    in_shape, classes = SHAPES.get(name, ZOO_SHAPES[name])
    run = make_run(tmp_path / "run", name, in_shape=in_shape, num_classes=classes)
    images = synthetic_images(in_shape, 8, seed=3)
    ours, _ = run_nhwc(run, images, precision, backend=backend)
    ref = _reference(run, images)
    assert np.abs(ours - ref).max() < 2e-2 and (ours.argmax(1) == ref.argmax(1)).mean() >= 0.999


def test_layouts_chosen(tmp_path):
    """A 3-channel stem reads 4-channel pixels; an MLP's input stays flat (NCHW order, no permutation); the dense
    layer after alexnet's flatten is packed as a 3x3 kernel over the 256-channel map."""
    run = make_run(tmp_path / "a", "alexnet", in_shape=(3, 32, 32))
    _, ctx = run_nhwc(run, synthetic_images((3, 32, 32), 1))
    assert ctx["x0"]["cs"] == 4 and ctx["nhwc_ops"][0]["tiles"][0]["fn"].endswith(", 4>")
    fc = next(p for p in ctx["packs"] if p["cout"] == 4096)
    assert (fc["name"], fc["c"], fc["cs"], fc["kh"], fc["kw"], fc["kp"]) == ("layers.15", 256, 256, 3, 3, 2304)
    run = make_run(tmp_path / "m", "mlp")
    _, ctx = run_nhwc(run, synthetic_images((1, 28, 28), 1))
    assert (ctx["x0"]["c"], ctx["x0"]["hw"], ctx["x0"]["cs"]) == (784, 1, 784)


def test_unsupported_layout_keeps_nchw(tmp_path):
    """A batch norm over a flattened map (one scale per NCHW feature) has no NHWC kernel: the whole network keeps
    the fp32 NCHW path, and says why."""
    layers = [{"conv": {"filters": 5, "kernel": 3}}, "flatten", "batchnorm", {"dense": {"units": 3}}, "softmax"]
    spec = {"layers": layers}
    run = make_run(tmp_path / "run", spec, in_shape=(1, 8, 8), num_classes=3)
    info, _ = generate(run, tmp_path / "out", precision="fp16")
    assert info["layout"].startswith("nchw (layers.2")
    assert "enqueue_nhwc(n)" not in (tmp_path / "out" / "network.cu").read_text()
    info, _ = generate(run, tmp_path / "out32", precision="fp32")
    assert info["layout"] == "nchw"


def test_tile_choices():
    """Big layers get 128x128, 64-channel layers a 64-row tile, small dense batches the GEMV; thresholds descend
    and the last covers batch 1."""
    big = choose_tiles(rows_g=256, pixels=28 * 28, kp=2304, groups=1, max_batch=256, dense=False)
    assert (big[0].bm, big[0].bn) == (128, 128) and big[-1].min_n == 1
    assert all(a.min_n > b.min_n for a, b in zip(big, big[1:]))
    narrow = choose_tiles(rows_g=64, pixels=56 * 56, kp=576, groups=1, max_batch=256, dense=False)
    assert all(t.bm == 64 for t in narrow)
    fc = choose_tiles(rows_g=4096, pixels=1, kp=9216, groups=1, max_batch=256, dense=True)
    assert fc[-1].kind == "gemv" and fc[-2].min_n == 9
    assert choose_tiles(rows_g=16, pixels=1, kp=128, groups=1, max_batch=8, dense=True)[0].kind == "gemv"
    assert all(t.key in AUTO_TILES for t in big + narrow + fc if t.kind == "conv")
    wide = choose_tiles(rows_g=64, pixels=56 * 56, kp=576, groups=1, max_batch=256, dense=False, tiles=tuple(TILES))
    assert (wide[0].bm, wide[0].bn) == (64, 256)  # same modelled rate as 128x128, no padded rows


def test_forced_tile(tmp_path, monkeypatch):
    """CF_NHWC_TILE forces one tile on every 8-channel-aligned conv and dense launch (dense layers keep the GEMV for
    batches <= 8); the 4-channel stem keeps its own; an unknown tile is an error that lists the choices."""
    assert forced_tile({}) is None and forced_tile({TILE_ENV: "128x128x64"}) == (128, 128, 64, 8)
    assert forced_tile({TILE_ENV: "128x128x32w4"}) == (128, 128, 32, 4)
    assert forced_tile({TILE_ENV: "64x64x32"}) == (64, 64, 32, 4)  # 4 warps: 64x64's default
    with pytest.raises(ConvforgeError, match="choose from: 128x128x32"):
        forced_tile({TILE_ENV: "96x96x32"})
    monkeypatch.setenv(TILE_ENV, "128x256x32")
    run = make_run(tmp_path / "a", "alexnet", in_shape=(3, 32, 32))
    images = synthetic_images((3, 32, 32), 2)
    ours, ctx = run_nhwc(run, images)
    convs = [op for op in ctx["nhwc_ops"] if op["kind"] == "conv"]
    assert convs[0]["tiles"][0]["targs"].endswith(", 4") and "128, 256" not in convs[0]["tiles"][0]["targs"]
    for op in convs[1:]:
        assert op["tiles"][0]["targs"].startswith("Elem, 128, 256, 32, 8, 8"), op["name"]
    assert convs[-1]["tiles"][-1]["fn"].startswith("gemv_nhwc") and convs[-1]["tile_desc"].endswith("gemv@1")
    np.testing.assert_allclose(ours, _reference(run, images), atol=1e-5)


def test_deepen_takes_k64_tiles_for_deep_layers_from_a_quarter_wave_of_ctas():
    """nhwc.deepen: 3x3 layers get the k-64 tile from the first batch with DEEP_MIN_BLOCKS CTAs (a new threshold
    inside an entry's range when needed); 1x1 layers (K < 576) and other tiles stay as choose_tiles made them."""
    from convforge.cudagen.nhwc import DEEP_MIN_BLOCKS, Tile, deepen

    narrow = [Tile(1, "conv", 64, 128)]  # resnet18's 64-channel 3x3 layers: 25 CTAs an image at 56 x 56
    assert [(t.min_n, t.key) for t in deepen(narrow, 64, 56 * 56, 576, 1, 256)] == [
        (2, (64, 128, 64, 8)), (1, (64, 128, 32, 8))]  # fmt: skip
    assert math.ceil(2 * 56 * 56 / 128) >= DEEP_MIN_BLOCKS > math.ceil(56 * 56 / 128)
    assert deepen(narrow, 64, 56 * 56, 64, 1, 256) == narrow  # a 1x1 layer
    wide = [Tile(2, "conv", 128, 128), Tile(1, "conv", 128, 64)]
    assert [t.name for t in deepen(wide, 512, 49, 4608, 1, 256)] == ["128x128x64", "128x128x32", "128x64x32"]
    assert deepen(wide, 512, 49, 4608, 1, 256)[0].min_n == 19  # 13 n-tiles x 4 m-tiles >= 32 from batch 19
    assert deepen(wide, 512, 49, 4608, 1, 8) == wide  # never 32 CTAs below batch 9
