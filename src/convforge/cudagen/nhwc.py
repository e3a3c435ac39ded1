"""fp16/bf16 networks with NHWC activations: tensor geometries, packed weights, tile choices and buffers.

The native fp16/bf16 kernels (kernels/conv_nhwc.cuh, nhwc_ops.cuh) keep every activation in T (half or bfloat16)
as N x H x W x cs, cs = channels rounded up to 8 so that the im2col loader moves 8 channels (16 bytes) per copy. The
network input arrives fp32 NCHW and is converted once. A <= 4-channel input read only by a strided stem (stride s > 1,
e.g. resnet18's 7x7/2, alexnet's 11x11/4) is converted into that stem's space-to-depth map instead (s2d.py: C*s*s
channels, cs = 16 or 48 for RGB at s = 2 or 4), over which the stem runs at stride 1 with 16-byte copies. It replaces
a 4-channel stem that took 1.08 of resnet18's 5.8 ms (224 px, batch 256, fp16, H200, ncu); rewritten, it takes
1.04 ms natively and 0.65 ms in cuDNN (--bench-layers, codegen_layers_*_s2d_deep_*.jsonl). Any other <= 4-channel
input read only by convolutions gets cs = 4 (8-byte copies), so such a stem's GEMM depth grows 3 -> 4 channels
rather than 3 -> 8. Padded channels are written as 0 (or another finite value) and every consumer's packed
weights are 0 there.

A dense layer is a GEMM over the flat NHWC row of its input; its fp32 weights (PyTorch's NCHW flatten order) are
packed at start-up as a convolution with the input's H x W as kernel, which permutes the columns into NHWC order, so
no layout conversion runs before a classifier. The output layer reads the NCHW-flattened order and writes fp32.

make_nhwc returns None and the reason for a network this layout cannot express exactly (a grouped convolution with
channels per group not a multiple of 8, a batch norm or maxout over a flattened map, ...): it keeps the fp32 NCHW
path, which handles every layer codegen supports.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, replace

from ..errors import ConvforgeError
from .plan import Op, Plan, assign_buffers
from .s2d import SpaceToDepth, plan_s2d, rewrite_conv, s2d_weights

BK = 32  # packed weight rows are a multiple of it (conv_nhwc.cuh's k slice of 32; a slice of 64 zero-fills the rest)
ELEM_BYTES = 2  # half and bfloat16
INDEX_LIMIT = (1 << 31) - 4096  # the kernels' 32-bit per-image and per-weight-tensor offsets
GEMV_MAX_BATCH = 8  # dense layers up to this batch: one warp per output unit (gemv_nhwc)
SMS = 132  # H100 / H200
# tile (bm, bn, bk, warps) -> relative MMA rate per SM, from the shared-memory bytes per MMA of its warp tile (64x32
# warps reuse fragments more than 32x32 ones, 64x64 more still); 2 CTAs of 8 warps per SM (4 of 4; 1 of 8 and 2 of
# 4 for 64x64 warps). A model for choosing, not a measurement: benchmarks/nhwc_tiles.py times every tile per layer.
# fmt: off
TILES = {
    (128, 128, 32, 8): 1.0, (128, 64, 32, 8): 0.8, (64, 128, 32, 8): 0.8, (64, 64, 32, 4): 0.6,
    # only forced (CF_NHWC_TILE) or via DEEPER below: per layer they beat those seldom and by little (nhwc_tiles_*)
    (64, 256, 32, 8): 1.0, (128, 256, 32, 8): 1.1, (256, 128, 32, 8): 1.1, (128, 128, 32, 4): 1.1,
    (64, 256, 32, 4): 1.1, (64, 128, 32, 4): 0.9, (128, 128, 64, 8): 1.05, (64, 128, 64, 8): 0.85,
    (128, 128, 64, 4): 1.15,
}  # (no 64x256x64: its 3 x 46 KB ring leaves room for 1 CTA per SM)
# fmt: on
# the tiles choose_tiles picks from (DEEPER swaps two of them for their k-64 versions; the rest: CF_NHWC_TILE only)
AUTO_TILES = ((128, 128, 32, 8), (128, 64, 32, 8), (64, 128, 32, 8), (64, 64, 32, 4))
# k slices of 64 (half the barriers per MMA) for these tiles when K >= 576 and the launch has >= 32 CTAs. Measured
# per layer on an H200 (benchmarks/results/nhwc_tiles_NVIDIA-H200_2026-11-22.md, resnet18 / alexnet fp16): 3x3, 5x5
# and dense layers 3-20% faster at batch 256 and 32 (e.g. 512x7x7 3x3: 0.239 -> 0.211 ms at 256, 0.056 -> 0.052 at
# 32); 1x1 layers (K <= 256) and launches of a few CTAs (batch 1) 0-15% slower. With the other new tiles forced
# (64x256, 128x256, 256x128, 4-warp ones) the whole pass was slower than today's choice on both nets at every batch.
DEEPER = {(128, 128, 32, 8): (128, 128, 64, 8), (64, 128, 32, 8): (64, 128, 64, 8)}
DEEP_MIN_K, DEEP_MIN_BLOCKS = 576, 32
TILE_ENV = "CF_NHWC_TILE"  # BMxBNxBK[wW], read at generation: every 8-channel-aligned conv/dense layer runs that tile
# conv_wgmma.cuh (wgmma.mma_async; the build then targets sm_90a) for --arch sm_90 / sm_90a builds. By default
# ("auto") for layers of >= 128 output channels per group, groups == 1, from the first batch with DEEP_MIN_BLOCKS
# CTAs of its 128x128 tile: measured per layer on an H200 (nhwc_tiles_wgmma_NVIDIA-H200_2026-11-22.md), 10-25%
# faster than conv_nhwc there at batch 256 and 32; slower for 64-channel layers and the stem (mma.sync keeps them)
# and at batch 1. CF_NHWC_WGMMA=0 turns it off, 1 puts it on every 8-channel-aligned layer with groups == 1 (64x256s4
# for <= 64 channels), a WGMMA_TILES name forces that tile there; benchmarks/conv_check.cu checks and times it.
WGMMA_ENV = "CF_NHWC_WGMMA"
WGMMA_ARCHS = ("sm_90", "sm_90a")
# name -> (bm, bn, stages) of conv_wgmma.cuh's WgmmaTile; BM 64 for layers of <= 64 output channels per group
WGMMA_TILES = {"128x128s3": (128, 128, 3), "128x128s4": (128, 128, 4), "128x256s4": (128, 256, 4),
               "64x256s4": (64, 256, 4)}  # fmt: skip
WGMMA_DEFAULT, WGMMA_NARROW, WGMMA_MIN_ROWS = "128x128s3", "64x256s4", 128  # measured best of WGMMA_TILES there
# Stride-1 layers of 64 output channels whose input pixels hold 16-64 channels (resnet18's 64-channel 3x3 layers,
# space-to-depth stems) in sm_90 builds take one of two persistent kernels that read a shared-memory halo of the
# input instead of an im2col gather (they need up to 222 KB of shared memory a CTA, which only H100/H200 give):
# conv_shift.cuh (wgmma over shifted views of the halo; sm_90a, so only where conv_wgmma is allowed) from the first
# batch with SHIFT_MIN_TILES tiles, conv_halo.cuh (mma.sync) below it or without wgmma. Measured on an H200
# (benchmarks/conv_check.cu, fp16, batch 256): resnet18's 64-channel 3x3 layers 0.19 / 0.20 ms (+ residual) with
# conv_shift, 0.28 / 0.31 with conv_halo, 0.39 / 0.46 for the best conv_nhwc / conv_wgmma tile; its space-to-depth
# stem 0.45, 0.67 and 1.26 (cuDNN: 0.65). HALO_TILES: BP (output pixels a tile) -> warps along pixels x channels,
# and whether the residual tile is staged in shared memory (else it is loaded into registers before the multiply);
# the 16-warp BP 256 tile from HALO_WIDE_MIN_K on (the stem's K = 256 ran no faster on it) once the grid has a tile
# per SM. CF_NHWC_HALO=0 turns both off.
HALO_ENV = "CF_NHWC_HALO"
HALO_TILES = {128: (4, 2, True), 256: (8, 2, False)}  # fmt: skip
HALO_CHANNELS, HALO_OUT, HALO_WIDE_MIN_K, HALO_MAX_SMEM = (16, 32, 48, 64), 64, 576, 227 * 1024
SHIFT_POSITIONS, SHIFT_MIN_TILES = 256, SMS // 2  # conv_shift's tile: grid positions; its launches from half the SMs
TARGET_BLOCKS, WS_FLOATS = 264, 8 << 20  # splitk.cuh choose_splits and the network's split-K workspace
BYTE_COST = 0.5  # MAC-slots per SM that moving one byte through DRAM costs (4.8 TB/s vs ~300 T MAC/s, H200)


def round8(v: int) -> int:
    return (v + 7) // 8 * 8


@dataclass(frozen=True)
class Geom:
    """How one activation tensor is stored: c real channels (features of a vector) of h x w pixels, cs per pixel."""

    c: int
    h: int
    w: int
    cs: int

    @property
    def hw(self) -> int:
        return self.h * self.w

    @property
    def elems(self) -> int:  # per image
        return self.hw * self.cs


@dataclass(frozen=True)
class Tile:
    min_n: int  # used for batches >= min_n (and below the previous entry's min_n)
    kind: str  # conv (conv_nhwc) | wgmma (conv_wgmma) | halo (conv_halo: bm = output pixels a tile) | shift | gemv
    bm: int = 0
    bn: int = 0
    bk: int = BK
    warps: int = 8
    stages: int = 0  # wgmma only: the ring's k slices

    @property
    def key(self) -> tuple[int, int, int, int]:
        return self.bm, self.bn, self.bk, self.warps

    @property
    def name(self) -> str:
        if self.kind == "wgmma":
            return f"wgmma{self.bm}x{self.bn}s{self.stages}"
        if self.kind in ("halo", "shift"):
            return f"{self.kind}{self.bm}"
        return tile_name(self.key) if self.kind == "conv" else self.kind


def default_warps(bm: int, bn: int) -> int:
    """conv_nhwc.cuh NhwcTile's default: 4 warps for 64x64, else 8."""
    return 4 if bm * bn <= 64 * 64 else 8


def tile_name(key: tuple[int, int, int, int]) -> str:
    """BMxBNxBK, plus wW when the warp count is not the default (128x128x32w4)."""
    bm, bn, bk, warps = key
    return f"{bm}x{bn}x{bk}" + ("" if warps == default_warps(bm, bn) else f"w{warps}")


@dataclass(frozen=True)
class Pack:
    """One conv/dense's weights packed into T [rows][kp] (kernels/nhwc_ops.cuh repack_weights)."""

    weight: str  # the fp32 weight entry it is packed from
    offset: int  # elements into the packed buffer
    cout: int
    rows: int
    c: int
    cs: int
    kh: int
    kw: int
    kp: int


@dataclass
class NhwcPlan:
    geom: dict[int, Geom]  # tensor id -> storage (the network input: its converted copy)
    input_id: int  # the fp32 NCHW input tensor
    x0_id: int  # its T NHWC copy
    ops: list[Op]  # the plan's ops, a space-to-depth stem rewritten (same indices, tensors and names)
    s2d: SpaceToDepth | None = None  # how the input is converted for the rewritten stem ops[stem]
    stem: int = -1  # -1: no stem rewritten
    packs: dict[int, Pack] = field(default_factory=dict)  # op index -> packed weights
    shapes: dict[int, list[int]] = field(default_factory=dict)  # op index -> NhwcShape fields
    tiles: dict[int, list[Tile]] = field(default_factory=dict)  # op index -> launch per batch size
    fp32_ids: set[int] = field(default_factory=set)  # stored as float: the logits the output layer reads
    slot_of: dict[int, int] = field(default_factory=dict)
    slot_bytes: list[int] = field(default_factory=list)  # per image
    packed_elems: int = 0
    # --backend cudnn only (cudnn_nhwc.py): op index -> cudnn | cublas | native, why a conv stays native, and the
    # T bias vectors of the convolutions that may take cuDNN's fused bias + ReLU
    paths: dict[int, str] = field(default_factory=dict)
    native_why: dict[int, str] = field(default_factory=dict)
    bias_packs: dict[int, Pack] = field(default_factory=dict)
    stem_native: Pack | None = None  # the cuDNN stem's weights for the native kernel (CF_CUDNN_STEM=native)

    @property
    def uses_wgmma(self) -> bool:
        """A layer launches conv_wgmma.cuh or conv_shift.cuh (the project is then built for sm_90a)."""
        return any(t.kind in ("wgmma", "shift") for tiles in self.tiles.values() for t in tiles)

    @property
    def uses_halo(self) -> bool:
        """A layer launches conv_halo.cuh or conv_shift.cuh."""
        return any(t.kind in ("halo", "shift") for tiles in self.tiles.values() for t in tiles)

    @property
    def uses_shift(self) -> bool:
        """A layer launches conv_shift.cuh."""
        return any(t.kind == "shift" for tiles in self.tiles.values() for t in tiles)


class _Refuse(Exception):
    """A layer the NHWC layout cannot run exactly; the network keeps the fp32 NCHW path."""


def _input_geom(plan: Plan, input_id: int, s2d: SpaceToDepth | None) -> Geom:
    if s2d is not None:
        return Geom(s2d.channels, s2d.hs, s2d.ws, round8(s2d.channels))
    c, h, w = plan.in_shape
    readers = [op for op in plan.ops if any(t.id == input_id for t in op.inputs)]
    if c <= 4 and all(op.kind == "conv" and not op.p["dense"] and op.p["groups"] == 1 for op in readers):
        return Geom(c, h, w, 4)
    if all(op.kind == "conv" and op.p["dense"] for op in readers):  # flattened: keep the NCHW order, no permutation
        return Geom(c * h * w, 1, 1, round8(c * h * w))
    return Geom(c, h, w, round8(c))


def _need(ok: bool, op: Op, why: str) -> None:
    if not ok:
        raise _Refuse(f"{op.name} ({op.kind}): {why}")


def _out_geom(op: Op, gx: Geom, geom: dict[int, Geom]) -> Geom:
    """The storage of op's output, after checking that op's input is stored the way its kernel reads it."""
    p = op.p
    if op.kind == "conv" and p["dense"]:
        _need(gx.c * gx.hw == p["cin"], op, "input size differs from the layer's")
        return Geom(p["cout"], 1, 1, round8(p["cout"]))
    if op.kind == "conv":
        _need((gx.c, gx.h, gx.w) == (p["cin"], p["h"], p["w"]), op, "input shape differs from the layer's")
        if p["groups"] > 1:
            cin_g, cout_g = p["cin"] // p["groups"], p["cout"] // p["groups"]
            _need(cin_g % 8 == 0 and cout_g % 8 == 0 and gx.cs == p["cin"], op, "channels per group not x8")
        return Geom(p["cout"], p["ho"], p["wo"], round8(p["cout"]))
    if op.kind == "pool":
        _need((gx.c, gx.h, gx.w) == (p["c"], p["h"], p["w"]) and gx.cs % 8 == 0, op, "input is not its C x H x W map")
        return Geom(gx.c, p["ho"], p["wo"], gx.cs)
    if op.kind == "global_pool":
        _need(gx.c == p["c"] and gx.hw == p["hw"] and gx.cs % 8 == 0, op, "input is not its C x H x W map")
        return Geom(gx.c, 1, 1, gx.cs)
    if op.kind == "scale_shift":
        _need(not op.weights or (gx.c, gx.hw) == (p["c"], p["hw"]), op, "per-feature scale over a flattened map")
        _need(gx.cs % 8 == 0, op, "input channels not padded to 8")
        return gx
    if op.kind == "add":
        _need(geom[op.inputs[1].id] == gx and gx.cs % 8 == 0, op, "operands stored differently")
        return gx
    if op.kind == "maxout":
        _need((gx.c, gx.hw) == (p["cout"] * p["pieces"], p["hw"]), op, "maxout over a flattened map")
        return Geom(p["cout"], gx.h, gx.w, round8(p["cout"]))
    size = gx.c * gx.hw  # softmax / sigmoid: a vector in NCHW-flatten order
    return Geom(size, 1, 1, round8(size))


def _geometries(plan: Plan, input_id: int, x0_id: int, s2d: SpaceToDepth | None) -> dict[int, Geom]:
    geom = {input_id: _input_geom(plan, input_id, s2d)}
    for op in plan.ops:
        gx = geom[op.inputs[0].id]
        g = _out_geom(op, gx, geom)
        if op.residual is not None:
            _need(geom[op.residual.id] == g, op, "shortcut stored differently from the output")
        _need(g.elems < INDEX_LIMIT and gx.elems < INDEX_LIMIT, op, "tensor too large for 32-bit offsets")
        geom[op.out.id] = g
    geom[x0_id] = geom[input_id]
    return geom


def conv_shape(op: Op, gx: Geom, gy: Geom) -> tuple[list[int], Pack]:
    """NhwcShape fields (conv_nhwc.cuh) of a conv/dense op and how its weights are packed (offset 0)."""
    p = op.p
    if p["dense"]:  # a GEMM over the input's flat NHWC row; weights packed with the input's H x W as kernel
        k = gx.elems
        kp = math.ceil(k / BK) * BK
        shape = [1, 1, k, k, p["cout"], gy.cs, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, k, kp]
        return shape, Pack(op.weights["w"], 0, p["cout"], gy.cs, gx.c, gx.cs, gx.h, gx.w, kp)
    cin_g = gx.cs if p["groups"] == 1 else p["cin"] // p["groups"]
    k = p["kh"] * p["kw"] * cin_g
    kp = math.ceil(k / BK) * BK
    shape = [p["h"], p["w"], gx.cs, cin_g, p["cout"], gy.cs, p["ho"], p["wo"]]
    shape += [p[key] for key in "kh kw sh sw ph pw dh dw groups".split()] + [k, kp]
    c = p["cin"] // p["groups"]
    return shape, Pack(op.weights["w"], 0, p["cout"], gy.cs, c, cin_g, p["kh"], p["kw"], kp)


def _splits(blocks: int, kp: int, bk: int, out_elems: int) -> int:
    """splitk.cuh choose_splits, for the cost model."""
    if blocks >= TARGET_BLOCKS // 2:
        return 1
    s = min(math.ceil(TARGET_BLOCKS / blocks), kp // (4 * bk), 32)
    while s > 1 and s * out_elems > WS_FLOATS:
        s -= 1
    return max(s, 1)


def tile_cost(tile: tuple[int, int, int, int], rows_g: int, ncols: int, kp: int, groups: int) -> float:
    """Modelled time of one launch, in MAC-slots of one SM: the busiest SM runs ceil(CTAs / SMs) CTAs, each its
    whole padded tile over its k range, at the tile's rate; plus the split-K partial sums' round trip."""
    bm, bn, bk, _ = tile
    blocks = math.ceil(ncols / bn) * math.ceil(rows_g / bm) * groups
    splits = _splits(blocks, kp, bk, ncols * rows_g * groups)
    k_slice = math.ceil(kp / bk / splits) * bk
    cost = math.ceil(blocks * splits / SMS) * bm * bn * k_slice / TILES[tile]
    if splits > 1:
        cost += BYTE_COST * 8 * splits * ncols * rows_g * groups / SMS
    return cost


def choose_tiles(
    rows_g: int, pixels: int, kp: int, groups: int, max_batch: int, dense: bool, tiles=AUTO_TILES
) -> list[Tile]:
    """The launch for every batch size 1..max_batch as descending thresholds: the cheapest of ``tiles`` at batch 1,
    2, 4, ..., max_batch (ties: the larger tile), kept while the cheapest is under 10% better (fewer kernels to
    compile, and the model is not that exact); dense layers up to GEMV_MAX_BATCH images take the GEMV."""
    first = GEMV_MAX_BATCH + 1 if dense else 1
    batches = sorted({b for b in [2**i for i in range(17)] + [first, max_batch] if first <= b <= max_batch})
    runs: list[Tile] = []
    for b in batches:
        cost = {t: tile_cost(t, rows_g, b * pixels, kp, groups) for t in tiles}
        best = min(tiles, key=lambda t: (cost[t], -t[0] * t[1], t[2], t[3]))
        keep = runs and cost[runs[-1].key] <= 1.1 * cost[best]
        if not keep:
            runs.append(Tile(b, "conv", *best))
    if dense:
        runs.append(Tile(1, "gemv"))
    ordered = sorted(runs, key=lambda t: -t.min_n)
    return [*ordered[:-1], replace(ordered[-1], min_n=1)]


def first_full_batch(pixels: int, bn: int, mtiles: int, start: int, stop: int) -> int | None:
    """The first batch in [start, stop) whose launch of BN-pixel tiles (x ``mtiles`` along m) has DEEP_MIN_BLOCKS
    CTAs, or None: where the measured k-64 and wgmma tiles start to pay (deepen, auto_wgmma)."""
    return next((b for b in range(start, stop) if math.ceil(b * pixels / bn) * mtiles >= DEEP_MIN_BLOCKS), None)


def deepen(tiles: list[Tile], rows_g: int, pixels: int, kp: int, groups: int, max_batch: int) -> list[Tile]:
    """choose_tiles' launches with DEEPER's k-64 tiles from the first batch with DEEP_MIN_BLOCKS CTAs on."""
    if kp < DEEP_MIN_K:
        return tiles
    out: list[Tile] = []
    upper = max_batch + 1  # each entry covers batches [min_n, the previous entry's min_n)
    for tile in tiles:
        deep = DEEPER.get(tile.key) if tile.kind == "conv" else None
        if deep is not None:
            first = first_full_batch(pixels, tile.bn, math.ceil(rows_g / tile.bm) * groups, tile.min_n, upper)
            if first is not None:
                out.append(Tile(first, "conv", *deep))
            if first == tile.min_n:
                upper = tile.min_n
                continue
        out.append(tile)
        upper = tile.min_n
    return out


def forced_tile(env: dict[str, str] | None = None) -> tuple[int, int, int, int] | None:
    """The tile that $CF_NHWC_TILE (BMxBNxBK[wW], e.g. 64x256x32 or 128x128x32w4) forces on every native conv/dense
    launch, or None; for measuring each tile per layer (benchmarks/nhwc_tiles.py) and checking its numerics (-m gpu)."""
    value = (os.environ if env is None else env).get(TILE_ENV, "").strip().lower()
    if not value:
        return None
    names = {tile_name(t): t for t in TILES}
    if value not in names:
        raise ConvforgeError(f"{TILE_ENV}={value!r} is not a tile of conv_nhwc.cuh; choose from: {', '.join(names)}")
    return names[value]


def wgmma_tile(env: dict[str, str] | None = None) -> str | None:
    """What $CF_NHWC_WGMMA asks for: "auto" when unset (measured layers only), "all" for 1, a WGMMA_TILES name, or
    None for 0; an unknown value is an error that lists the choices."""
    value = (os.environ if env is None else env).get(WGMMA_ENV, "").strip().lower()
    if value == "0":
        return None
    if value in ("", "1"):
        return "all" if value else "auto"
    if value not in WGMMA_TILES:
        raise ConvforgeError(f"{WGMMA_ENV}={value!r}: give 1, 0 or a conv_wgmma tile: {', '.join(WGMMA_TILES)}")
    return value


def build_arch(nplan: NhwcPlan | None, arch: str) -> str:
    """The arch the project is built for: sm_90a when a layer launches conv_wgmma (wgmma exists only in sm_90a code,
    which runs on H100/H200 alone), else ``arch``."""
    return "sm_90a" if nplan is not None and nplan.uses_wgmma else arch


def use_wgmma(
    tiles: list[Tile], rows_g: int, pixels: int, groups: int, name: str, dense: bool, max_batch: int
) -> list[Tile]:
    """conv_nhwc launches of an 8-channel-aligned layer moved to conv_wgmma (the GEMV of small dense batches kept;
    grouped layers keep conv_nhwc): "auto" -> auto_wgmma; "all" -> WGMMA_NARROW when rows_g <= 64, else
    WGMMA_DEFAULT; a tile name -> that tile."""
    if groups != 1:
        return tiles
    if name == "auto":
        return auto_wgmma(tiles, rows_g, pixels, dense, max_batch)
    if name == "all":
        name = WGMMA_NARROW if rows_g <= 64 else WGMMA_DEFAULT
    bm, bn, stages = WGMMA_TILES[name]
    out: list[Tile] = []
    for t in tiles:  # descending min_n: a run of conv tiles becomes one wgmma entry down to the run's last min_n
        wg = t if t.kind == "gemv" else Tile(t.min_n, "wgmma", bm, bn, 64, 8, stages)
        if out and out[-1].kind == wg.kind == "wgmma":
            out[-1] = wg
        else:
            out.append(wg)
    return out


def auto_wgmma(tiles: list[Tile], rows_g: int, pixels: int, dense: bool, max_batch: int) -> list[Tile]:
    """WGMMA_DEFAULT for layers of >= WGMMA_MIN_ROWS output channels, from the first batch whose grid has
    DEEP_MIN_BLOCKS CTAs (past the GEMV's batches for a dense layer); the launches below it stay as they were."""
    if rows_g < WGMMA_MIN_ROWS:
        return tiles
    bm, bn, stages = WGMMA_TILES[WGMMA_DEFAULT]
    first = first_full_batch(pixels, bn, math.ceil(rows_g / bm), 1, max_batch + 1)
    if first is not None and dense:
        first = max(first, GEMV_MAX_BATCH + 1)
    if first is None or first > max_batch:
        return tiles
    kept = [t for t in tiles if t.min_n < first]
    return [Tile(first, "wgmma", bm, bn, 64, 8, stages), *kept] if kept else [Tile(1, "wgmma", bm, bn, 64, 8, stages)]


def halo_enabled(arch: str | None, env: dict[str, str] | None = None) -> bool:
    """conv_halo for this build: an sm_90 arch, $CF_NHWC_HALO not 0 and no CF_NHWC_TILE measurement forced."""
    value = (os.environ if env is None else env).get(HALO_ENV, "").strip()
    if value not in ("", "0", "1"):
        raise ConvforgeError(f"{HALO_ENV}={value!r}: give 1 (the default on H100/H200 builds) or 0")
    return arch in WGMMA_ARCHS and value != "0" and forced_tile(env) is None


def halo_smem(shape: list[int], bp: int, residual: bool) -> int:
    """Shared memory of one conv_halo CTA (kernels/conv_halo.cuh HaloTile::smem_bytes) for NhwcShape ``shape``."""
    cs, kh, kw, wo = shape[2], shape[8], shape[9], shape[7]
    halo_w, halo_rows = wo + math.ceil((kw - 1) / 8) * 8, (bp - 1) // wo + 2 + kh - 1
    weights = HALO_OUT * (kh * kw * cs + 8) * ELEM_BYTES
    staged = residual and HALO_TILES[bp][2]
    return weights + 2 * (
        halo_rows * halo_w * (cs + 8) * ELEM_BYTES + (bp * (HALO_OUT + 8) * ELEM_BYTES if staged else 0)
    )


def shift_smem(shape: list[int]) -> int:
    """Shared memory of one conv_shift CTA (kernels/conv_shift.cuh ShiftTile::smem_bytes)."""
    cs, kh, kw, wo = shape[2], shape[8], shape[9], shape[7]
    positions = math.ceil((SHIFT_POSITIONS + (kh - 1) * (wo + kw - 1) + kw - 1) / 8) * 8
    weights = math.ceil(kh * kw * cs / 64) * HALO_OUT * 64 * ELEM_BYTES
    return 1024 + weights + SHIFT_POSITIONS * 36 * 4 + 2 * (cs // 8) * positions * 16


def halo_tiles(shape: list[int], residual: bool, fp32_out: bool, max_batch: int, shift: bool = False):
    """The launches of a layer of NhwcShape ``shape`` on the halo kernels, or None when they do not apply (stride
    and dilation 1, one group, HALO_OUT output channels stored, input pixels of HALO_CHANNELS elements all read, T
    output, the shared memory within HALO_MAX_SMEM). ``shift`` (an sm_90a build): conv_shift from the first batch
    with SHIFT_MIN_TILES tiles; below it (or without) conv_halo: halo256 from the first batch with a tile per SM when
    K >= HALO_WIDE_MIN_K, else halo128."""
    h, w, cs, cin_g, cout, cs_out, ho, wo, kh, kw, sh, sw, ph, pw, dh, dw, groups, k, kp = shape
    if fp32_out or (sh, sw, dh, dw, groups) != (1, 1, 1, 1, 1) or cs_out != HALO_OUT or cs != cin_g:
        return None
    if cs not in HALO_CHANNELS or halo_smem(shape, 128, residual) > HALO_MAX_SMEM:
        return None
    tiles = [Tile(1, "halo", 128, HALO_OUT, 0, 8)]
    if k >= HALO_WIDE_MIN_K and halo_smem(shape, 256, residual) <= HALO_MAX_SMEM:
        tiles = _from_first(tiles, Tile(0, "halo", 256, HALO_OUT, 0, 16), math.ceil(ho * wo / 256), SMS, max_batch)
    if shift and shift_smem(shape) <= HALO_MAX_SMEM:
        per_image = math.ceil(ho * (wo + kw - 1) / SHIFT_POSITIONS)
        tiles = _from_first(tiles, Tile(0, "shift", SHIFT_POSITIONS, HALO_OUT, 0, 8), per_image, SHIFT_MIN_TILES,
                            max_batch)  # fmt: skip
    return tiles


def _from_first(tiles: list[Tile], tile: Tile, per_image: int, min_tiles: int, max_batch: int) -> list[Tile]:
    """``tile`` from the first batch whose launch has ``min_tiles`` tiles (``per_image`` an image) on, ``tiles``
    (descending min_n) below it."""
    first = next((b for b in range(1, max_batch + 1) if b * per_image >= min_tiles), None)
    if first is None:
        return tiles
    below = [t for t in tiles if t.min_n < first]
    return [replace(tile, min_n=first), *below] if first > 1 else [replace(tile, min_n=1)]


def _layer_tiles(rows_g: int, pixels: int, kp: int, groups: int, max_batch: int, dense: bool, vec8: bool) -> list[Tile]:
    """choose_tiles, or the forced tile (GEMV kept for small dense batches); the 4-channel stem keeps one tile of
    its own (one kernel less to compile; a forced tile would spill there: 8 gathered rows per thread)."""
    tiles = choose_tiles(rows_g, pixels, kp, groups, max_batch, dense)
    if not vec8:
        return [replace(tiles[0], min_n=1)]
    forced = forced_tile()
    if forced is None:
        return deepen(tiles, rows_g, pixels, kp, groups, max_batch)
    if dense and max_batch <= GEMV_MAX_BATCH:
        return [Tile(1, "gemv")]
    return [Tile(GEMV_MAX_BATCH + 1, "conv", *forced), Tile(1, "gemv")] if dense else [Tile(1, "conv", *forced)]


def _pack_all(plan: Plan, nplan: NhwcPlan, max_batch: int, wgmma: str | None, halo: bool) -> None:
    offset = 0
    for i, op in enumerate(plan.ops):
        if op.kind != "conv":
            continue
        gx, gy = nplan.geom[op.inputs[0].id], nplan.geom[op.out.id]
        shape, pack = conv_shape(op, gx, gy)
        _need(pack.rows * pack.kp < INDEX_LIMIT, op, "weights too large for 32-bit offsets")
        nplan.shapes[i] = shape
        nplan.packs[i] = Pack(pack.weight, offset, *[getattr(pack, k) for k in "cout rows c cs kh kw kp".split()])
        offset += math.ceil(pack.rows * pack.kp / 64) * 64  # 128-byte aligned tensors
        rows_g, pixels = gy.cs // op.p["groups"], gy.hw
        _need(pixels * max_batch < INDEX_LIMIT, op, "batch x pixels too large for the kernels")
        dense, vec8 = bool(op.p["dense"]), shape[3] % 8 == 0
        nplan.tiles[i] = _layer_tiles(rows_g, pixels, pack.kp, op.p["groups"], max_batch, dense, vec8)
        if wgmma is not None and vec8:
            nplan.tiles[i] = use_wgmma(nplan.tiles[i], rows_g, pixels, op.p["groups"], wgmma, dense, max_batch)
        if halo and not dense:
            fp32_out, shift = op.out.id in nplan.fp32_ids, wgmma is not None
            nplan.tiles[i] = halo_tiles(shape, op.residual is not None, fp32_out, max_batch, shift) or nplan.tiles[i]
    nplan.packed_elems = offset


def _fp32_logits(plan: Plan) -> set[int]:
    """The output layer's input, when a conv/dense writes it for that layer alone: kept fp32, as the NCHW path
    does (bf16 logits of about 10 are off by up to 0.04; emulated alexnet 224 px: 1.6e-2 vs 1.3e-2 of probability)."""
    src = plan.ops[-1].inputs[0].id
    producer = next((op for op in plan.ops if op.out.id == src), None)
    readers = [op for op in plan.ops if any(t.id == src for t in op.inputs)]
    return {src} if producer is not None and producer.kind == "conv" and len(readers) == 1 else set()


def _s2d_stem(plan: Plan, input_id: int) -> tuple[int, SpaceToDepth | None]:
    """The index and space-to-depth rewrite of the strided stem that alone reads the network input (-1, None: none)."""
    readers = [i for i, op in enumerate(plan.ops) if any(t.id == input_id for t in op.inputs)]
    only = len(readers) == 1 and [t.id for t in plan.ops[readers[0]].inputs] == [input_id]
    s2d = plan_s2d(plan.ops[readers[0]], plan.in_shape) if only else None
    return (readers[0], s2d) if s2d is not None else (-1, None)


def _rewrite_stem(plan: Plan, stem: int, s2d: SpaceToDepth) -> Plan:
    """The plan with ops[stem] rewritten over the s2d map and its rearranged weights added (batch norm is already
    folded into the originals, which the fp32 NCHW pass of the same binary keeps reading)."""
    op = plan.ops[stem]
    name = f"{op.weights['w']}.s2d"
    weights = {**plan.weights, name: s2d_weights(plan.weights[op.weights["w"]], s2d)}
    ops = [rewrite_conv(op, s2d, name) if i == stem else o for i, o in enumerate(plan.ops)]
    return replace(plan, ops=ops, weights=weights)


def make_nhwc(plan: Plan, max_batch: int, arch: str | None = None) -> tuple[NhwcPlan | None, str]:
    """The NHWC version of a plan (the same ops, tensors and weights, a strided stem rewritten space-to-depth), or
    None and why the network keeps NCHW. ``arch``: the build's; conv_wgmma launches only for an sm_90 one, and not
    by default when CF_NHWC_TILE forces a conv_nhwc tile (that tile is what is being measured)."""
    input_id = next(t.id for op in plan.ops for t in op.inputs if t.slot == -1)
    x0_id = 1 + max(t.id for op in plan.ops for t in [*op.inputs, op.out])
    wgmma = wgmma_tile() if arch in WGMMA_ARCHS else None
    if wgmma == "auto" and forced_tile() is not None:
        wgmma = None
    stem, s2d = _s2d_stem(plan, input_id)
    view = _rewrite_stem(plan, stem, s2d) if s2d is not None else plan
    try:
        nplan = NhwcPlan(_geometries(view, input_id, x0_id, s2d), input_id, x0_id, view.ops, s2d, stem)
        nplan.fp32_ids = _fp32_logits(view)
        _pack_all(view, nplan, max_batch, wgmma, halo_enabled(arch))
    except _Refuse as e:
        return None, str(e)
    plan.weights.update(view.weights)  # stored in weights.bin like every other weight
    steps = [([input_id], x0_id)]
    steps += [([x0_id if t.id == input_id else t.id for t in op.inputs], op.out.id) for op in plan.ops]
    sizes = {out: nplan.geom[out].elems * (4 if out in nplan.fp32_ids else ELEM_BYTES) for _, out in steps}
    nplan.slot_of, nplan.slot_bytes = assign_buffers(steps, sizes, {input_id: -1, plan.ops[-1].out.id: -2})
    return nplan, "nhwc"
