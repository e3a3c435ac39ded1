"""folder_fast: the convs trained by Muon (engine/muon.py): Imagenette-128 88.82% over 3 runs (1,500 held out; 89.67 /
89.47 / 87.33) with 3.10 s of training, against 85.09% (86.67 / 85.47 / 83.13) in 2.78 s with Nesterov SGD, same seeds
(benchmarks/results/folder_muon_sweep*_NVIDIA-H200_2026-11-22.json, benchmarks/folder_epochs.py). Muon lr 0.08 /
0.12 / 0.24 / 0.4: 88.13 / 88.82 / 88.11 / 87.95%; momentum 0.7 88.85%, 0.8 (lr 0.24) 88.04%; 30 epochs 88.55% in
2.35 s, 35 epochs 88.53% in 2.72 s. Muon's step took 449 us in three zero-padded stacks of filter banks, then
376 us in one with the polynomial formed on the Gram side (muon_speed_*_gram_side.md; 88.64% over the same 3 seeds,
folder_muon_gram_side_*.json).

5 runs (train_speed_*_muon_folder.md): 88.81% +- 1.09% (89.67 / 89.47 / 87.33 / 87.67 / 89.93), 3.12-3.13 s of
training after the first run (3.47 s); a fresh command 11.46 s, 89.69% (folder_cli_muon_*.log).

With Nesterov SGD: 85.20% +- 1.46% over 5 runs, 40 epochs, training loop 2.77-2.79 s after the first run in a
process (3.09 s) with the fused loss and the one-kernel chunk gather; a fresh command 11.26 s
(H200, train_speed_*_final_session10_folder.md, folder_cli_final_session10.log). Before them 85.25% +- 1.08%,
training loop 2.9 s, H200, torch 2.11, with the fused batchnorm + ReLU kernels
(benchmarks/results/train_speed_*_normact_fashion_folder.md; the same 5 seeds before them: 85.71% +- 0.64%, 3.7 s).
As a command on a fresh H200 (folder_cli_threads_*.log): 14.6 s wall, then 10.2 s. 45 epochs
(benchmarks/folder_epochs.py, folder_fast_epochs_normact_*.json): 85.57% (min 84.27%) in 3.25 s, and 15.8 s as a
fresh command (folder_cli_e45_fresh.log): not adopted. Earlier: 85.8% mean of 3 runs. Wall time incl. decoding (each
run decodes afresh; train_speed_*_folder_warmup.md): 16.3 s for the first run on a fresh machine (CUDA/cuDNN start-up
and the Triton kernels' compilation overlap the decoding: engine/warmup.py; 19.9 s without that), then 11.6 and 12.6
s; training loop 4.1 s (4.9 s first run). As a command on a fresh H200 (`time convforge train IMAGENETTE.tar.gz
--recipe fast`, folder_cli_final_*.log): 12.3 s, of which 8.0 s inside the process (data 2.1, GPU warm-up wait 0.3,
setup 0.2, epochs 5.3); 20.4 s before decoding moved to processes and training stopped importing torch._dynamo.
Training loop 3.7 s after the pool kernel's vector loads. Measured per epoch count
(benchmarks/results/folder_fast_epochs_NVIDIA-H200_2026-11-22.log): 30 epochs 84.5% (3 runs, 11.4 s wall, previous
session), 40 epochs 86.1 / 86.1 / 85.3%, 50 epochs 87.1 / 85.5% (13.3 / 14.1 s wall).

Any folder of photos, decoded once to 128x128, trained from scratch. Tuned on Imagenette only; on CIFAR-10's JPEGs
(a photo set it was never run on, 32 px upscaled to 128, 10,000 held out; benchmarks/folder_epochs.py --held-out 0.2):
90.33 / 90.98% with 40 epochs in 24 s of training, 89.04 / 89.63% with 10 in 6 s (H200,
folder_fast_on_cifar10_s14.json).

Stride-2 stem to 64x64, then four conv-pool-BN blocks; flip and 16-pixel translate; Muon for the convs (their norms
held fixed) and Nesterov SGD for the rest, one cycle. Measured
with benchmarks/train_speed.py (train s = the epochs loop): benchmarks/results/train_speed_*.md.
"""

from __future__ import annotations

from typing import Any

from ..engine.fast import SETUP
from ..models import MODELS
from ._common import block, head, run_recipe
from ._tricks import muon_groups

NAME = "folder-fast"
HYP = dict(
    model=NAME,
    image_size=(128, 128),
    resize="crop",  # centre crop to square, keeps the aspect ratio
    channels=3,
    solver="muon",  # the convs by Muon; the batchnorms and the head by Nesterov SGD as MUON says
    lr=0.12,  # the filters' step, relative to their norm (nesterov: 0.4 per batch of 256, mean loss)
    momentum=0.6,  # the filters' (the SGD groups': MUON's sgd_momentum)
    weight_decay=5e-4,  # nesterov's (muon: MUON's sgd_decay, lr x wd per step)
    schedule="onecycle",
    epochs=40,
    batch_size=256,
    label_smoothing=0.1,
    flip=True,
    crop_pad=16,  # pixels of random translate at 128x128
)


# solver="muon" (HYP lr, momentum: the filters'): the other groups' Nesterov SGD (HYP's values) and the filters' Muon
MUON = dict(sgd_lr=0.4, sgd_momentum=0.9, sgd_decay=0.4 * 5e-4, ns_steps=3, normalize=True)


def setup(tr) -> None:
    if tr.cfg.solver == "muon":
        muon_groups(tr, MUON)


SETUP[NAME] = setup


@MODELS.register(NAME)
def network(in_shape: tuple[int, int, int], num_classes: int) -> dict[str, Any]:
    """128 -> stem 32 /2 (64) -> block 64 (32) -> block 128 (16) -> block 256 (8) -> block 384 (4) -> pool."""
    stem = [{"conv": {"filters": 32, "kernel": 3, "stride": 2, "padding": 1, "bias": False}}, "batchnorm", "relu"]
    return {"layers": stem + block(64) + block(128) + block(256) + block(384) + head()}


def train(cfg, *, source=None, **kw):
    return run_recipe(HYP, cfg, source=source, default_source=".", held_out=0.2, **kw)
