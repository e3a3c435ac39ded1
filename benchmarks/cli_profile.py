"""Where a `convforge train ...` command's wall time goes: timestamps of the imports, archive extraction, decoding,
cache write, each step of the GPU warm-up thread, the train phases (cProfile of the Trainer's construction), exit.

Run on the GPU machine (T0: the shell's clock just before python starts, so the interpreter start counts):
  T0=$(date +%s.%N) PYTHONPATH=src python3 benchmarks/cli_profile.py train IMAGENETTE.tar.gz --recipe fast
The warm-up steps mirror engine/warmup.py's _warm, split so that each is timed.
Logs: benchmarks/results/folder_cli_profile_*.log.
"""

import os
import sys
import threading
import time

T0 = float(os.environ["T0"])


def log(msg):
    print(f"[prof] {time.time() - T0:7.3f} {threading.current_thread().name[:12]:12s} {msg}", flush=True)


log("python up")
import atexit  # noqa: E402

atexit.register(lambda: log("atexit last handler"))
import torch  # noqa: E402

log("torch imported")
import convforge.cli as cli  # noqa: E402

log("convforge.cli imported")
from convforge.data import cache, folder, load  # noqa: E402
from convforge.engine import loop, warmup  # noqa: E402
from convforge.models import _kernels  # noqa: E402


def wrap(mod, name):
    fn = getattr(mod, name)

    def inner(*a, **k):
        log(f"{name} start")
        try:
            return fn(*a, **k)
        finally:
            log(f"{name} end")

    setattr(mod, name, inner)


import cProfile  # noqa: E402
import pstats  # noqa: E402

_Trainer = loop.Trainer


def profiled_trainer(*a, **k):
    prof = cProfile.Profile()
    prof.enable()
    try:
        return _Trainer(*a, **k)
    finally:
        prof.disable()
        pstats.Stats(prof).sort_stats("cumulative").print_stats(18)


loop.Trainer = profiled_trainer
for mod, name in [
    (load, "extract_once"),
    (load, "fingerprint"),
    (folder, "scan_headers"),
    (folder, "decode_files"),
    (cache, "_save"),
    (folder, "_fingerprint"),
    (loop, "Trainer"),
    (loop, "_run_epochs"),
    (loop, "_finish"),
]:
    wrap(mod, name)


def warm(device, dtype, pool, dynamo=False):
    import torch.nn.functional as F

    log("warm: start")
    with torch.cuda.device(device):
        torch.cuda.init()
        torch.zeros(1, device=device)
        log("warm: cuda context")
        x = torch.zeros(2, 8, 8, 8, device=device, dtype=dtype, requires_grad=True)
        w = torch.zeros(8, 8, 3, 3, device=device, dtype=dtype, requires_grad=True)
        F.conv2d(x.contiguous(memory_format=torch.channels_last), w, padding=1).sum().backward()
        torch.cuda.synchronize(device)
        log("warm: cudnn conv fwd+bwd")
        if pool and _kernels.available():
            log("warm: triton import done")
            _kernels.compile_pool(dtype)
            log("warm: triton pool compiled")
    if dynamo:
        warmup._import_dynamo()
        log("warm: dynamo imported")


warmup._warm = warm
orig_done = loop.Phases.done


def done(self, name):
    orig_done(self, name)
    log(f"phase {name} done ({self.seconds[name]:.2f} s)")


loop.Phases.done = done
sys.argv = ["convforge", *sys.argv[1:]]
log("cli main")
try:
    cli.main()
finally:
    log(f"exit; torch._dynamo imported: {'torch._dynamo' in sys.modules}")
    atexit.register(lambda: log("atexit first handler"))
