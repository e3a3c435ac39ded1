"""Where a `convforge train ...` command's wall time goes: timestamps of the imports, archive extraction, decoding,
cache write, each step of the GPU warm-up thread, the train phases (cProfile of the Trainer's construction), exit.

Run on the GPU machine (T0: the shell's clock just before python starts, so the interpreter start counts):
  T0=$(date +%s.%N) PYTHONPATH=src python3 benchmarks/cli_profile.py train IMAGENETTE.tar.gz --recipe fast
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

import torch  # noqa: E402, F401

log("torch imported")
import convforge.cli as cli  # noqa: E402

log("convforge.cli imported")
from convforge.data import cache, folder, load  # noqa: E402
from convforge.engine import loop, warmup  # noqa: E402


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
    (warmup, "_warm"),
    (warmup, "_start_cudnn"),
    (warmup, "_compile"),
    (warmup, "_import_dynamo"),
]:
    wrap(mod, name)


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
