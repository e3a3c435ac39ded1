"""TrainConfig: every field is one `convforge train` option and one YAML key; saved resolved in the Run."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError


@dataclass(frozen=True)
class TrainConfig:
    # data
    source: str = "digits"  # a folder or a built-in dataset name
    split: tuple[float, ...] = (0.8, 0.1, 0.1)  # train, val, test fractions per class
    data_dir: str | None = None  # already-downloaded canonical files are looked up here first
    cache_dir: str | None = None  # default $CONVFORGE_CACHE or ~/.cache/convforge
    image_size: tuple[int, ...] | None = None  # H,W; default: the dataset's own
    channels: int | None = None  # 1 or 3; default: the dataset's own
    resize: str = "stretch"  # stretch | crop | pad
    strict: bool = False  # unreadable images are an error instead of skipped
    download: bool = True
    # model
    model: str = "digits-cnn"  # a zoo name (`convforge models list`) or a spec file
    init: str | None = None  # a Run folder whose matching weights start this run (transfer learning)
    freeze: bool = False  # with init: train only the new head
    # solver and schedule
    solver: str = "adam"  # sgd | sgdm | nesterov | adam | adamw | rmsprop | muon
    lr: float | str | None = None  # None: the solver's usual default; "suggested": run lr-find first
    momentum: float | None = None  # None: the solver's default (0.9 for sgdm/nesterov)
    weight_decay: float = 0.0
    schedule: str = "cosine"  # constant | step | piecewise | cosine | onecycle | triangle | linear
    warmup_epochs: float = 0.0
    step_epochs: int = 10  # step: multiply lr by gamma every step_epochs
    milestones: tuple[int, ...] = ()  # piecewise: epochs at which lr is multiplied by gamma
    gamma: float = 0.1
    # training
    epochs: int = 20
    batch_size: int = 64
    label_smoothing: float = 0.0
    balance: str = "none"  # none | weights (loss weights) | sampler (class-balanced sampling)
    early_stopping: int = 0  # stop after this many epochs without val improvement; 0 = off
    time_budget_s: float = 0.0  # stop training after this many seconds (checked every step); 0 = no limit
    lookahead: int = 0  # every N steps (after 30% of training) average the weights into an EMA and take it; 0 = off
    # augmentation (on the batch, on the training device)
    flip: bool = False  # random horizontal flip
    flip_mode: str = "random"  # random: a coin per image per epoch | alternate: a coin per image, inverted each epoch
    shift: float = 0.0  # max translation as a fraction of width/height
    shear: float = 0.0  # max shear angle in degrees
    zoom: float = 0.0  # max zoom in/out as a fraction
    rescale: str = "standardize"  # standardize: (x-mean)/std per channel | unit: x/255 (Keras rescale)
    crop_pad: int = 0  # random shift by up to this many pixels: reflect-pad and crop back (0 = off)
    cutout: int = 0  # side in pixels of one random square set to zero per image (0 = off)
    brightness: float = 0.0  # max brightness change, a fraction of the pixel range
    contrast: float = 0.0  # max contrast change, a fraction (x -> mean + (x - mean) * (1 +- contrast))
    # progressive resizing (fastai's): the first epochs train on smaller images, quicker steps of a model that pools
    # globally; later epochs and evaluation see the full size
    progressive_epochs: int = 0  # how many first epochs train on resized batches (0 = off)
    progressive_size: float = 0  # their shorter side: pixels, or below 1 a fraction of the images' (bilinear)
    # execution
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    threads: int = 0  # CPU threads; 0 = auto (1 when a step is under 20M multiply-adds, else all cores)
    precision: str = "auto"  # auto (bf16 autocast on GPU) | fp32 | bf16
    seed: int = 0
    deterministic: bool = False
    cuda_graphs: bool | None = None  # capture the training step in a CUDA graph; default: on with CUDA
    data_placement: str = "auto"  # auto | device | stream (GPU JPEG decode) | pinned: where training images live
    memory_fraction: float = 0.5  # auto placement streams when the uint8 set needs more of the free GPU memory
    compile: bool = False  # torch.compile the model (seconds of compile time; pays on long runs)
    # several processes (torch.distributed; README "Multi-GPU and multi-node")
    gpus: int = 1  # processes on this machine, one per GPU (NCCL); with --device cpu: CPU processes (gloo)
    procs: int = 0  # CPU processes with gloo (tests, CI); 0 = use --gpus
    parallel: str = "data"  # data (DDP) | hybrid (conv layers data-parallel, dense layers split across ranks)
    batch_scope: str = "global"  # global: --batch-size is the whole step, split over processes | per-gpu
    scale_lr: bool = False  # with --batch-scope per-gpu: multiply lr by the process count (linear scaling)
    sync_bn: bool = False  # batchnorm statistics over the global batch (SyncBatchNorm, GPUs only)
    dist_timeout_s: float = 300.0  # a collective that waits longer (a rank died or hung) ends the whole job
    out: str | None = None  # run folder; default runs/<source>-<model>-<time>

    def validate(self) -> None:
        positive = {"epochs": self.epochs, "batch_size": self.batch_size}
        for name, value in positive.items():
            if value <= 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be a positive integer, not {value}")
        if isinstance(self.lr, str) and self.lr != "suggested":
            raise ConfigError(f"--lr must be a positive number or 'suggested', not {self.lr!r}")
        if isinstance(self.lr, float) and self.lr <= 0:
            raise ConfigError(f"--lr must be a positive number, not {self.lr}")
        if self.weight_decay < 0:
            raise ConfigError(f"--weight-decay must be >= 0, not {self.weight_decay}")
        if not 0 <= self.label_smoothing < 1:
            raise ConfigError(f"--label-smoothing must be in [0, 1), not {self.label_smoothing}")
        choices = {
            "balance": ("none", "weights", "sampler"),
            "rescale": ("standardize", "unit"),
            "precision": ("auto", "fp32", "bf16"),
            "flip_mode": ("random", "alternate"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                flag = name.replace("_", "-")
                raise ConfigError(f"--{flag} must be one of {', '.join(allowed)}, not {getattr(self, name)!r}")
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise ConfigError(f"--device must be auto, cpu, cuda or cuda:N, not {self.device!r}")
        if self.progressive_epochs < 0 or self.progressive_size < 0:
            raise ConfigError("--progressive-epochs and --progressive-size must be >= 0 (0 = off)")
        if self.progressive_epochs and not self.progressive_size:
            raise ConfigError("--progressive-epochs needs --progressive-size (pixels, or a fraction below 1)")
        for name in ("crop_pad", "cutout"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 0 pixels, not {getattr(self, name)}")
        for name in ("brightness", "contrast"):
            if not 0 <= getattr(self, name) < 1:
                raise ConfigError(f"--{name} must be a fraction in [0, 1), not {getattr(self, name)}")
        for name in ("shift", "zoom"):
            if not 0 <= getattr(self, name) < 1:
                raise ConfigError(f"--{name} must be a fraction in [0, 1), not {getattr(self, name)}")
        if not 0 <= self.shear < 90:
            raise ConfigError(f"--shear must be an angle in degrees in [0, 90), not {self.shear}")
        if self.freeze and not self.init:
            raise ConfigError("--freeze needs --init RUN_DIR (the run whose feature layers are frozen)")
        if self.lookahead < 0:
            raise ConfigError(f"--lookahead must be >= 0 steps (0 = off), not {self.lookahead}")
        if self.early_stopping < 0:
            raise ConfigError(f"--early-stopping must be >= 0, not {self.early_stopping}")
        if self.data_placement not in ("auto", "device", "stream", "pinned"):
            raise ConfigError(f"--data-placement must be auto, device, stream or pinned, not {self.data_placement!r}")
        if not 0 < self.memory_fraction <= 1:
            raise ConfigError(f"--memory-fraction must be in (0, 1], not {self.memory_fraction}")
        self._validate_distributed()

    def _validate_distributed(self) -> None:
        if self.gpus < 1 or self.procs < 0:
            raise ConfigError(f"--gpus must be >= 1 and --procs >= 0, not {self.gpus} and {self.procs}")
        if self.dist_timeout_s <= 0:
            raise ConfigError(f"--dist-timeout-s must be > 0 seconds, not {self.dist_timeout_s}")
        for name, allowed in {"parallel": ("data", "hybrid"), "batch_scope": ("global", "per-gpu")}.items():
            if getattr(self, name) not in allowed:
                flag = name.replace("_", "-")
                raise ConfigError(f"--{flag} must be one of {', '.join(allowed)}, not {getattr(self, name)!r}")
