"""The core workflow on a GPU: train (bf16 autocast), evaluate and predict on cuda (run with -m gpu)."""

from __future__ import annotations

import pytest
import torch

import convforge

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def cuda_run(tmp_path_factory):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    out = tmp_path_factory.mktemp("gpu") / "digits"
    return convforge.train("digits", epochs=20, device="cuda", out=str(out), progress=False, log=lambda s: None)


def test_train_on_cuda_reaches_cpu_accuracy(cuda_run):
    assert cuda_run.run.meta["device"].startswith("cuda")
    assert cuda_run.test_accuracy >= 0.95


def test_predict_on_cuda_equals_cpu(cuda_run):
    from convforge.data import DataConfig, load_data

    images = load_data(DataConfig(source="digits"), progress=False).test.images
    on_gpu = convforge.load(cuda_run.run.path, device="cuda").probabilities(images)
    on_cpu = convforge.load(cuda_run.run.path, device="cpu").probabilities(images)
    # cuDNN convolutions run in TF32 on Hopper by default: ~1e-3 relative differences, same classes
    assert torch.allclose(on_gpu, on_cpu, atol=2e-3)
    assert (on_gpu.argmax(1) == on_cpu.argmax(1)).float().mean() >= 0.99
    assert convforge.evaluate(cuda_run.run.path)["accuracy"] == pytest.approx(cuda_run.test_accuracy, abs=0.02)


def test_warmup_loads_an_epochs_pytorch_kernels_and_cudnn_convs_without_error():
    """engine/warmup.py _start_epoch_ops and _start_convs, engine/muon.py warm_up (run quietly in the thread: here
    directly, so an error shows)."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    from convforge.engine import warmup

    convs = warmup._fusions("cifar10-fast", 3, batch=64).cudnn_convs
    for dtype in (torch.bfloat16, torch.float32):
        warmup._start_epoch_ops(torch.device("cuda"), dtype, 128, 3)
        warmup._start_convs(torch.device("cuda"), dtype, convs, 64)
    warmup.muon.warm_up(torch.device("cuda"), warmup._hidden_matrices("cifar10-fast"))


def test_warmup_model_step_runs_and_frees_its_memory():
    """engine/warmup.py _start_step (run quietly in the thread: here directly, so an error shows): cifar10-fast with
    its alternating flips and translate (and resized, as --progressive-epochs does), digits-cnn on 28 x 28 without
    augmentation; nothing kept afterwards, and
    no draw from the global random generators."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    from convforge.engine import warmup
    from convforge.engine.augment import Augment

    device = torch.device("cuda")
    warmup._start_step(device, torch.float32, 8, ("digits-cnn", 1, (28, 28)), Augment(), False)  # the cached 1
    before = torch.cuda.memory_allocated(device)
    generators = torch.get_rng_state(), torch.cuda.get_rng_state(device)
    warmup._start_step(device, torch.bfloat16, 256, ("cifar10-fast", 3, (32, 32)), Augment(flip=True, crop_pad=2), True)
    # --progressive-epochs: the first epochs' step, on batches resized to 24 x 24 after their augmentation
    warmup._start_step(device, torch.bfloat16, 256, ("cifar10-fast", 3, (32, 32)), Augment(flip=True), True, (24, 24))
    warmup._start_step(device, torch.bfloat16, 128, ("digits-cnn", 1, (28, 28)), Augment(), False)
    assert torch.cuda.memory_allocated(device) == before
    # the run's thread seeds and draws from the global generators meanwhile: the warm-up must not move them
    assert torch.equal(torch.get_rng_state(), generators[0]) and torch.equal(torch.cuda.get_rng_state(), generators[1])


def test_warmup_thread_compiles_the_pool_and_adam_kernels_a_later_launch_uses():
    """engine/warmup.py: the background thread finishes without error; afterwards the pool launches on real maps
    and a captured Adam update of an MLP-sized weight reuse the kernels it compiled (sizes unspecialized)."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    from convforge.engine import TrainConfig, kernels, warmup
    from convforge.models import _kernels

    config = TrainConfig(model="cifar10-fast", precision="bf16", solver="adam")
    thread = warmup.start(config, torch.device("cuda"))
    thread.join(timeout=120)
    assert not thread.is_alive()

    def compiled() -> int:
        jits = [_kernels._kernels()[0], kernels._adam_kernel()]
        return sum(len(cache[0]) for jit in jits for cache in jit.device_caches.values())

    before = compiled()
    assert before >= 3  # pool forward, Adam with a float lr and with a device lr
    for shape in [(4, 256, 9, 9), (8, 64, 30, 30)]:  # cifar10-fast's channel counts: the kernels warmed for them
        x = torch.randn(shape, device="cuda", dtype=torch.bfloat16).contiguous(memory_format=torch.channels_last)
        assert torch.equal(_kernels.WindowMax.apply(x, 2, 2), torch.nn.functional.max_pool2d(x, 2))
    param, grad, m, v = (torch.rand(784 * 128, device="cuda") for _ in range(4))
    step, lr = torch.ones((), device="cuda"), torch.full((), 1e-3, device="cuda")
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):  # nothing may compile inside a capture: it must all be there already
        kernels.adam_update(param, grad, m, v, step, lr, (0.9, 0.999), 1e-8, 0.0, False)
    graph.replay()
    assert compiled() == before


def _captured_after_an_eager_step(opt, params, grads, lr: float):
    """opt stepped once eagerly on `grads` (creating its state), then its step captured in a CUDA graph with every
    group's lr read from one device tensor, as engine/fast/graph.py captures it. Returns the graph and that tensor."""
    for p, g in zip(params, grads):
        p.grad = g.clone()
    opt.step()
    lr_tensor = torch.tensor(lr, device="cuda")
    for group in opt.param_groups:
        group["lr"] = lr_tensor
    graph = torch.cuda.CUDAGraph()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side), torch.cuda.graph(graph, stream=side):
        opt.step()
    torch.cuda.current_stream().wait_stream(side)
    return graph, lr_tensor


@pytest.mark.parametrize("cls_name", ["Adam", "AdamW"])
def test_triton_adam_for_big_tensors_equals_torch_fused_adam_captured(cls_name):
    """engine/kernels.py on CUDA: a 784 x 128 weight (Triton) and a bias (PyTorch's fused kernel), stepped inside a
    CUDA graph with a device lr (as engine/fast/graph.py does), equal torch's fused optimizer run eagerly."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    from convforge.engine import kernels

    torch.manual_seed(0)
    start = [torch.randn(128, 784, device="cuda"), torch.randn(128, device="cuda")]
    grads = [[torch.randn_like(t) for t in start] for _ in range(5)]
    ref = [torch.nn.Parameter(t.clone()) for t in start]
    mine = [torch.nn.Parameter(t.clone()) for t in start]
    kw = dict(lr=1e-3, weight_decay=0.01, fused=True)
    ref_opt = getattr(torch.optim, cls_name)(ref, **kw)
    opt = getattr(kernels, cls_name)(mine, **kw, capturable=True)
    graph, _ = _captured_after_an_eager_step(opt, mine, grads[0], lr=1e-3)
    for step, gs in enumerate(grads):
        for p, g in zip(ref, gs):
            p.grad = g.clone()
        ref_opt.step()
        if step:
            for p, g in zip(mine, gs):
                p.grad.copy_(g)
            graph.replay()
    for a, b in zip(mine, ref):
        torch.testing.assert_close(a.detach(), b.detach(), rtol=1e-5, atol=1e-6)


def test_pools_over_few_channels_run_triton_with_narrow_blocks(monkeypatch):
    """models/_kernels.py: 3-, 8-, 16- and 32-channel maps (digits-cnn, simple-cnn) run the Triton pool with channel
    blocks of their width (pool_blocks), values and gradients equal to max_pool2d's."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    from convforge.models import _kernels
    from convforge.models._modules import WindowMaxPool

    ran = []
    original = _kernels.WindowMax.apply
    monkeypatch.setattr(_kernels.WindowMax, "apply", lambda *a: ran.append(a[0].shape[1]) or original(*a))
    assert [_kernels.pool_blocks(c) for c in (3, 8, 16, 64, 256)] == [(512, 4), (256, 8), (128, 16), (32, 64), (32, 64)]
    pool = WindowMaxPool(2)
    for shape in [(4, 3, 9, 9), (128, 8, 28, 28), (128, 16, 14, 14), (32, 32, 13, 13)]:
        x = torch.randn(shape, device="cuda").contiguous(memory_format=torch.channels_last).requires_grad_(True)
        ref = x.detach().clone().requires_grad_(True)
        y, expected = pool(x), torch.nn.functional.max_pool2d(ref, 2)
        grad = torch.randn_like(expected)
        y.backward(grad)
        expected.backward(grad)
        assert torch.equal(y, expected) and torch.equal(x.grad, ref.grad)
    assert ran == [3, 8, 16, 32]


def test_muon_step_captured_with_a_device_lr_equals_eager_steps():
    """engine/muon.py inside a CUDA graph (as engine/fast/graph.py runs it): channels_last filters, a tall matrix, a
    plain SGD group and weight normalization step exactly as eagerly with the same lrs."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    from convforge.engine.muon import Muon

    torch.manual_seed(0)
    shapes = [(64, 24, 3, 3), (256, 64, 3, 3), (256, 256, 3, 3), (300, 40), (256,)]
    start = [torch.randn(s, device="cuda") for s in shapes]
    start[:3] = [t.to(memory_format=torch.channels_last) for t in start[:3]]
    grads = [[torch.randn_like(t) for t in start] for _ in range(4)]

    def optimizer(params):
        groups = [dict(params=params[:4], orthogonalize=True, normalize=True), dict(params=params[4:])]
        return Muon(groups, lr=0.2, momentum=0.6, ns_steps=3, fused=True)

    ref, mine = [[torch.nn.Parameter(t.clone()) for t in start] for _ in range(2)]
    ref_opt, opt = optimizer(ref), optimizer(mine)
    lrs = [0.2, 0.15, 0.1, 0.05]
    graph, lr = _captured_after_an_eager_step(opt, mine, grads[0], lr=lrs[1])
    for step, gs in enumerate(grads):
        for group in ref_opt.param_groups:
            group["lr"] = lrs[step]
        for p, g in zip(ref, gs):
            p.grad = g.clone()
        ref_opt.step()
        if step:
            lr.fill_(lrs[step])
            for p, g in zip(mine, gs):
                p.grad.copy_(g)
            graph.replay()
    for a, b in zip(mine, ref):
        torch.testing.assert_close(a.detach(), b.detach(), rtol=1e-5, atol=1e-6)
