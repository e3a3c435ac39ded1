"""Pay the GPU's one-time start-up costs in a background thread while the data loads on the CPU.

Why: the first run in a process (and the first on a machine) spent seconds before its first step on things that do
not need the data: creating the CUDA context, loading cuDNN, and compiling the Triton max-pool kernels
(~2 s once per machine; Triton then caches them on disk). The folder-fast recipe on a fresh H200 took 19.9 s of wall
time on its first run against 12.5 s on later ones (benchmarks/results/train_speed_*_folder_triton_pool.md), while
its decoding kept the CPU threads, not the GPU, busy for ~6 s. `train` starts this thread before `load_data` and
joins it before building the Trainer; any failure here is ignored, since the training path meets (and reports) the
same problem itself. Each thread gets its own cuBLAS workspaces (32 MiB each on Hopper), which the runs then carried
in their peaks (MNIST digits-cnn same recipe 223 MiB, 191 MiB without them: H200, train_speed_*_triton_adam.md vs
*_warmup_no_cublas.md; the model step's two made mnist-fast's 262 MiB 326, train_speed_*_final_session13.md): the
thread frees them when done, while the run's own thread is still loading its data (no cuBLAS call there).
A run with --compile also imports torch._dynamo here (1.5-5 s), so that the import overlaps the decoding threads
instead of following them; other runs never import it (engine/dynamo_free.py).
"""

from __future__ import annotations

import functools
import importlib
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ..inference import resolve_precision
from ..models import _conv_act, _kernels, _norm_act, _small_conv, _small_dense, build_model, resolve_spec
from . import cross_entropy, kernels, muon, progressive
from .augment import AlternateFlip, Augment, augment_batch, augment_of
from .augment import compile_ahead as compile_augment
from .fast import gather

COMPILE_THREADS = 4


def start(cfg, device: torch.device) -> threading.Thread | None:
    """A started daemon thread warming `device` for `cfg`'s model (on a CPU: a --compile run's import), or None."""
    if device.type != "cuda":
        if not cfg.compile:
            return None
        thread = threading.Thread(target=_import_dynamo, daemon=True)
    else:
        dtype = torch.bfloat16 if resolve_precision(cfg.precision, device) == "bf16" else torch.float32
        adam = {"adam": False, "adamw": True}.get(str(cfg.solver))  # AdamW: decoupled weight decay
        channels, size = _input_channels(cfg), _input_size(cfg)
        model = (str(cfg.model), channels, size)
        pairs = Fusions() if cfg.compile else _fusions(*model, cfg.batch_size)  # --compile: inductor's kernels
        matrices = _hidden_matrices(*model) if cfg.solver == "muon" else []
        augment = augment_of(cfg)
        alternate = cfg.flip and cfg.flip_mode == "alternate"
        steps = [] if cfg.compile else [(model, augment, alternate, None)]
        if cfg.progressive_epochs and not cfg.compile:  # the first epochs' smaller maps too, their step first
            small = progressive.shape(cfg.progressive_size, *size)
            pairs = _merged(pairs, _fusions(str(cfg.model), channels, small, cfg.batch_size))
            steps.insert(0, (model, augment, alternate, small))
        args = (device, dtype, _pool_channels_of(*model), adam, pairs, bool(cfg.compile), matrices, cfg.batch_size,
                channels, steps, augment)  # fmt: skip
        thread = threading.Thread(target=_warm, args=args, daemon=True)
    thread.start()
    return thread


def _import_dynamo() -> None:
    _quietly(importlib.import_module, "torch._dynamo")


def _input_size(cfg) -> tuple[int, int]:
    """The images' (H, W) as far as the config tells before the data loads: --image-size, else the built-in sets'
    (MNIST and Fashion-MNIST 28, digits 8), else 32. Which convs are small at the batch size follows it: at 32 x 32,
    fashion-mnist-fast's stem looked too big and compiled at its first use, ~0.2 s of the first epoch."""
    if cfg.image_size:
        h, w = (tuple(cfg.image_size) * 2)[:2]
        return int(h), int(w)
    side = {"mnist": 28, "fashion-mnist": 28, "digits": 8}.get(str(cfg.source), 32)
    return side, side


def _input_channels(cfg) -> int:
    """The images' channels as far as the config tells before the data loads: --channels, else 1 for the built-in
    grayscale sets, else 3 (a first small conv's kernels specialize on it; a wrong guess compiles at first use)."""
    return cfg.channels or (1 if str(cfg.source) in ("digits", "mnist", "fashion-mnist") else 3)


@functools.cache
def _resolved(model: str, channels: int = 3, size: tuple[int, int] = (32, 32)):
    """The zoo model's resolved spec for a channels x H x W input, or None for a spec file or a zoo entry that wants
    another input size. Cached: the helpers below read it, and it only picks which kernels compile early (anything
    else compiles at first use)."""
    try:
        return resolve_spec(model, in_shape=(channels, *size), num_classes=10)
    except Exception:
        return None


def _pool_channels_of(model: str, channels: int = 3, size: tuple[int, int] = (32, 32)) -> set[int] | None:
    """Channel counts of the zoo model's max pools (the Triton kernels take any: their channel blocks follow it);
    None when it cannot be told (the kernels are warmed for 64 channels anyway)."""
    spec = _resolved(model, channels, size)
    return None if spec is None else set(_pool_channels(spec.to_dict()["layers"]))


class Fusions(NamedTuple):
    """What SpecNet runs on convforge's kernels (engine/warmup.py compiles them early)."""

    norm_act: frozenset = frozenset()  # (channels, ACT code, finishes_itself) of each batchnorm + activation pair
    conv_act: tuple = ()  # (conv, ACT code) of each forward-only conv + activation pair (models/_conv_act.py)
    small_conv: tuple = ()  # (conv, ReLU fused, first layer) of each small conv (models/_small_conv.py)
    small_dense: tuple = ()  # (linear, ReLU fused, first layer) of each small dense layer (models/_small_dense.py)
    dense_pairs: tuple = ()  # (first linear, second linear, first layer) of each dense, ReLU, dense pair of them
    cudnn_convs: tuple = ()  # (conv, input (C, H, W), first layer) of each top-level conv left to cuDNN


def _merged(a: Fusions, b: Fusions) -> Fusions:
    """The kernels of two image sizes (--progressive-epochs): which batchnorms finish their own sums, which convs are
    small and which cuDNN shapes run follow the map size."""
    return Fusions(a.norm_act | b.norm_act, *(x + y for x, y in zip(a[1:], b[1:])))


def _fusions(model: str, channels: int = 3, size: tuple[int, int] = (32, 32), batch: int = 64) -> Fusions:
    """The zoo model's Fusions, from the model built on the meta device (shapes without memory; anything else
    compiles at first use): the small convs that are small at this batch size on `size` images, and the dense layers
    small enough for some batch. folder-fast's head (batch 256) ran its epochs' last 80 rows on the dense kernels,
    whose first-use compile made a fresh command's first epoch 3.9 s instead of 2.3 (H200,
    folder_cli_int32_fresh.log)."""
    spec = _resolved(model, channels, size)
    if spec is None:
        return Fusions()
    with torch.device("meta"):
        net = build_model(spec)
    layers = net.layers
    nxt, shapes = [*layers[1:], None], [layer["out_shape"] for layer in spec.to_dict()["layers"]]
    norms = {
        (c, _norm_act.activation_code(layers[i], nxt[i]), _norm_act.finishes_itself(batch * h * w, c))
        for i in net.norm_act
        for c, h, w in [shapes[i]]
    }
    stems = [(layers[i], _conv_act.activation_code(layers[i], layers[i + 1])) for i in sorted(net.conv_act)]
    convs = [
        (layers[i], _kernels.fuses_relu(nxt[i]), i == 0)
        for i in sorted(net.small_conv)
        if _small_conv.macs(layers[i], batch * shapes[i][1] * shapes[i][2]) <= _small_conv.MAX_MACS
    ]
    rows = _small_dense.MAX_ROWS  # any batch of up to MAX_ROWS: an epoch's last, partial batch takes them too
    dense = [
        (layers[j], _kernels.fuses_relu(nxt[j]), i == 0)
        for i, j in sorted(net.small_dense.items())
        if _small_dense.macs(layers[j], min(batch, rows)) <= _small_dense.MAX_MACS
    ]
    small = {linear for linear, *_ in dense}
    pairs = [(layers[j - 2], layers[j], i == 0) for i, j in sorted(net.dense_pairs.items()) if layers[j - 2] in small]
    inputs, mine = [spec.to_dict()["in_shape"], *shapes], {conv for conv, *_ in convs}
    cudnn = [
        (conv, tuple(inputs[i]), i == 0)
        for i, conv in enumerate(layers)
        if type(conv) is nn.Conv2d and conv not in mine
    ]
    return Fusions(frozenset(norms), tuple(stems), tuple(convs), tuple(dense), tuple(pairs), tuple(cudnn))


def _hidden_matrices(model: str, channels: int = 3, size: tuple[int, int] = (32, 32)) -> list[tuple[int, int]]:
    """The (rows, cols) of the matrices the muon solver orthogonalizes in the zoo model (muon.hidden_matrices), built
    on the meta device; [] when it cannot be told."""
    spec = _resolved(model, channels, size)
    if spec is None:
        return []
    with torch.device("meta"):
        weights = muon.hidden_matrices(build_model(spec).parameters())
    return [(w.shape[0], w[0].numel()) for w in weights]


def _pool_channels(node) -> list[int]:
    """The channel count of every max pool in a resolved spec's layer tree (residual blocks nest layers)."""
    if isinstance(node, list):
        return [c for item in node for c in _pool_channels(item)]
    if not isinstance(node, dict):
        return []
    found = [node["out_shape"][0]] if node.get("type") == "maxpool" and node.get("out_shape") else []
    return found + [c for value in node.values() for c in _pool_channels(value)]


def _warm(device: torch.device, dtype: torch.dtype, pools: set | None, adam: bool | None, pairs: Fusions,
          dynamo: bool, matrices: list[tuple[int, int]] = (), batch: int = 64, channels: int = 3,
          steps: tuple | list = (), augment: Augment = Augment()) -> None:  # fmt: skip
    """cuDNN's start-up, and beside it (the longest step: ~2 s on a fresh machine) the Triton kernels the run will
    launch: the max pool's for each channel count of `pools` (None: 64), Adam's big-tensor update (`adam`: None for
    other solvers, else AdamW's decoupled decay), the fused batchnorm + activation's for each (channels, activation),
    the fused conv + activation's for each (conv, activation), the small convs' and dense layers' of `pairs`, and the
    mirror + translate of `augment` on `channels`-channel images;
    then an epoch's PyTorch kernels around its steps (`batch` rows of `channels`-channel images), then Muon's batched
    products for the hidden `matrices` (engine/muon.py), then, with the kernels compiled, one step of the model
    (`steps`: _start_step's arguments after the batch, for each image size the run trains on)."""
    compiling = None
    if _kernels.available():  # every run on CUDA launches some: the loss, the captured chunks' gather
        args = (_compile, device, dtype, pools, adam, pairs, channels, augment)
        compiling = threading.Thread(target=_quietly, args=args, daemon=True)
        compiling.start()
    _quietly(_start_cudnn, device, dtype)
    _quietly(_start_convs, device, dtype, pairs.cudnn_convs, batch)
    _quietly(_start_epoch_ops, device, dtype, batch, channels)
    if matrices:
        _quietly(muon.warm_up, device, list(matrices))
    if compiling is not None:
        compiling.join()
    for step in steps:
        _quietly(_start_step, device, dtype, batch, *step)
    _quietly(_free_cublas_workspaces, device)
    if dynamo:
        _import_dynamo()  # last: by then the archive is extracted (Python, holding the GIL) and the decoding runs


def _free_cublas_workspaces(device: torch.device) -> None:
    """Free the cuBLAS workspaces this thread's matrix products made (see the module docstring; private API, absent
    from some torch versions: then they stay)."""
    torch.cuda.synchronize(device)
    getattr(torch._C, "_cuda_clearCublasWorkspaces", lambda: None)()


def _quietly(step, *args) -> None:
    try:
        step(*args)
    except Exception:  # noqa: S110  (see the module docstring)
        pass


def _start_cudnn(device: torch.device, dtype: torch.dtype) -> None:
    with torch.cuda.device(device):
        x = torch.zeros(2, 8, 8, 8, device=device, dtype=dtype, requires_grad=True)
        w = torch.zeros(8, 8, 3, 3, device=device, dtype=dtype, requires_grad=True)
        F.conv2d(x.contiguous(memory_format=torch.channels_last), w, padding=1).sum().backward()
        torch.cuda.synchronize(device)


def _start_convs(device: torch.device, dtype: torch.dtype, convs: tuple, batch: int) -> None:
    """cuDNN's plans and kernels for each conv the run leaves to cuDNN (`convs`: Fusions.cudnn_convs), forward and
    gradients at the run's batch and map size, channels_last under the run's autocast: cuDNN picks and loads them at
    their first use otherwise, inside the first training step (cifar10-fast's took ~0.3 s in a fresh process, H200,
    first_cifar10-fast_*.log). One shape at a time, freed after it. The model step (_start_step) runs the same convs
    later, after the compiles; this stage still saves mnist-fast's first run ~10 ms (0.779-0.784 s vs 0.786-0.795 s
    without it; cifar10-fast 0.993-1.008 vs 0.995-1.002 s: alternating fresh processes on an H200,
    first_run_conv_warmup_ab_s14.txt)."""
    seen = set()
    cl = torch.channels_last
    with torch.cuda.device(device), torch.autocast("cuda", dtype=dtype, enabled=dtype != torch.float32):
        for conv, (c, h, w), first in convs:
            settings = dict(stride=conv.stride, padding=conv.padding, dilation=conv.dilation, groups=conv.groups,
                            bias=conv.bias is not None, padding_mode=conv.padding_mode)  # fmt: skip
            key = (conv.in_channels, conv.out_channels, conv.kernel_size, str(settings), c, h, w, first)
            if key in seen:
                continue
            seen.add(key)
            real = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, device=device, **settings)
            x = torch.zeros(batch, c, h, w, device=device, dtype=torch.float32 if first else dtype)
            real.to(memory_format=cl)(x.contiguous(memory_format=cl).requires_grad_(not first)).sum().backward()
        torch.cuda.synchronize(device)


def _start_step(device: torch.device, dtype: torch.dtype, batch: int, model: tuple, augment: Augment,
                alternate: bool, resize: tuple[int, int] | None = None) -> None:  # fmt: skip
    """One training step's augmentation, forward and backward of the zoo model `model` (_resolved's arguments) with
    random weights on random images at the run's batch and size, freed after: loads the PyTorch kernels the model and
    its augmentation launch that the stages above do not name, which CUDA otherwise loads inside the first training
    step. cifar10-fast's first step in a fresh process still spent 115 ms of host time on them after the other
    warm-ups (the alternating flip mask 21 ms, the global max 10 ms, GELU 6 ms, its first backward 41 ms; H200,
    first_cifar10-fast_after_warmups_*.log)."""
    spec = _resolved(*model)
    if spec is None:
        return
    channels, h, w = spec.to_dict()["in_shape"]
    cl = torch.channels_last
    with torch.cuda.device(device):
        # no draw from the global generators, which the run's own thread seeds and draws from meanwhile
        gen = torch.Generator(device).manual_seed(0)
        with torch.device("meta"):
            net = build_model(spec)
        net = _materialized(net, device, gen).to(memory_format=cl).train()
        # channels_last as the run's batches, so the augmentation takes their path (augment.fusable: one launch)
        images = torch.rand(batch, channels, h, w, device=device, generator=gen).contiguous(memory_format=cl)
        if augment.active:
            rows = torch.arange(batch, device=device)
            flip = AlternateFlip(batch, 0, device).mask(rows) if alternate else None
            unit = torch.ones(1, channels, 1, 1, device=device)
            images = augment_batch(images, augment, gen, unit=unit, flip=flip)
        if resize is not None:  # --progressive-epochs: as engine/progressive.py resizes the first epochs' batches
            images = progressive.resize(images, resize)
        with torch.autocast("cuda", dtype=dtype, enabled=dtype != torch.float32):
            logits = net(images.contiguous(memory_format=cl))
        labels = torch.zeros(batch, dtype=torch.long, device=device)
        cross_entropy.backward(cross_entropy.cross_entropy(logits, labels))
        torch.cuda.synchronize(device)


def _materialized(net: nn.Module, device: torch.device, gen: torch.Generator) -> nn.Module:
    """A meta-device module's parameters and buffers made anew on `device`, drawn from `gen`. Not to_empty(): its
    empty_like of a meta tensor imports torch.fx's symbolic shapes (sympy), ~1.8 s of the warm-up thread that the
    run then waited for (H200)."""
    for module in net.modules():
        for table in (module._parameters, module._buffers):
            for name, old in table.items():
                if old is None:
                    continue
                new = torch.zeros(old.shape, dtype=old.dtype, device=device)
                if new.is_floating_point():
                    new.normal_(0.0, 0.02, generator=gen)
                table[name] = nn.Parameter(new, old.requires_grad) if isinstance(old, nn.Parameter) else new
    return net


def _start_epoch_ops(device: torch.device, dtype: torch.dtype, batch: int, channels: int) -> None:
    """The PyTorch kernels an epoch launches around its steps, each loaded at its first launch (CUDA's lazy loading):
    the epoch order (randperm), the eager tail step's batch (a uint8 gather, normalize, channels_last copy) and a
    captured chunk's metric sums (engine/fast/graph.py GraphStep._sum: stack, sum, cat, argmax or a sign test,
    compare, adds) and PyTorch's loss (forward and backward, with and without label smoothing) on logits of either
    type. The process's first digits-cnn run had spent ~25 ms of its first step on the sums and ~35 ms more of its
    first epoch on the others, mnist-fast's first step 100 ms on its loss (H200, graph_overhead_first_*.log). Sizes
    as a run's (two batches of `batch` rows, 10 classes, 60,000 images): kernels are picked by size."""
    from .fast.graph import add_metrics
    from .loop import predictions  # loop imports this module

    with torch.cuda.device(device):
        torch.randperm(60_000, device=device, generator=torch.Generator(device).manual_seed(0))
        images = torch.zeros(2 * batch, channels, 8, 8, dtype=torch.uint8, device=device)
        offset = torch.zeros(1, channels, 1, 1, device=device)
        raw = images.contiguous(memory_format=torch.channels_last)[torch.arange(batch, device=device)]
        ((raw.float() - offset) * offset).contiguous(memory_format=torch.channels_last)
        labels = torch.zeros(batch, dtype=torch.long, device=device)
        loss, loss_sum = torch.zeros((), device=device), torch.zeros((), device=device)
        hits = torch.zeros((), dtype=torch.long, device=device)
        for logits_type in dict.fromkeys((dtype, torch.float32)):
            logits = torch.zeros(batch, 10, device=device, dtype=logits_type)
            for steps in (1, 2):  # a one-step chunk adds its own tensors, a longer one stacks and concatenates
                for binary in (False, True):
                    classes = functools.partial(predictions, binary=binary)
                    wanted = torch.cat([labels] * steps)
                    add_metrics(loss_sum, hits, [loss] * steps, [logits] * steps, wanted, batch, classes)
            for smoothing in (0.0, 0.1):  # PyTorch's loss (batches over the fused loss's rows: mnist-fast's 512)
                scores = logits.detach().requires_grad_()
                F.cross_entropy(scores.float(), labels, label_smoothing=smoothing).backward()
        torch.cuda.synchronize(device)


def _compile(device: torch.device, dtype: torch.dtype, pools: set | None, adam: bool | None, pairs: Fusions,
             channels: int, augment: Augment) -> None:  # fmt: skip
    """The Triton compiles, in COMPILE_THREADS threads (ptxas runs as a subprocess; the rest holds the GIL part of
    the time: 4 threads compiled folder-fast's kernels 1.5-2.1x faster than one, triton_compile_time_*.log)."""
    jobs = []
    if pools != set():
        jobs.append(functools.partial(_kernels.compile_pool, dtype, pools))
    if adam is not None:
        jobs.append(functools.partial(kernels.compile_adam, device, decoupled=adam))
    # the loss: the steps' logits in autocast's dtype, measure()'s in fp32 (inference.batched_logits)
    jobs += [functools.partial(cross_entropy.compile_forward, t) for t in dict.fromkeys((dtype, torch.float32))]
    jobs.append(functools.partial(gather.compile_ahead, device))  # a captured chunk's batches (uint8 images)
    jobs.append(functools.partial(compile_augment, channels, augment))  # their mirror + translate
    jobs += _norm_act.compile_jobs(dtype, pairs.norm_act) if pairs.norm_act else []
    jobs += [functools.partial(_conv_act.compile_kernel, conv, code, dtype) for conv, code in pairs.conv_act]
    if dtype != torch.float32:  # the small convs and dense layers run under autocast only; a first layer sees images
        for conv, relu, first in pairs.small_conv:
            jobs += _small_conv.compile_jobs(conv, relu, torch.float32 if first else dtype, dtype)
        for linear, relu, first in pairs.small_dense:
            jobs += _small_dense.compile_jobs(linear, relu, torch.float32 if first else dtype, dtype)
        for linear, second, first in pairs.dense_pairs:
            jobs += _small_dense.compile_pair_jobs(linear, second, torch.float32 if first else dtype, dtype)

    def run(job) -> None:
        with torch.cuda.device(device):
            job()

    with ThreadPoolExecutor(COMPILE_THREADS) as threads:
        for done in [threads.submit(run, job) for job in jobs]:
            done.result()
