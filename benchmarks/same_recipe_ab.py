"""A/B of one engine switch on the same-recipe runs, alternating between on and off in one process on one GPU
(machines differ by several percent, so separate calls cannot show a 2-3% effect). Prints per variant the mean
training seconds, epoch 1 and later epochs. Switches:
- `gather`: the captured chunk's one-kernel gather (engine/fast/gather.py) against the eager gathers it replaced;
- `loss`: the fused cross-entropy (engine/cross_entropy.py) against PyTorch's;
- `side`: a captured small dense layer's input and weight gradients as parallel graph branches (models/_kernels.py
  side_by_side) against one after the other (same_recipe_ab_side*_*.txt);
- `side-conv`: the same for the shallow small convs (models/_small_conv.py SIDE_BY_SIDE_COLUMNS; all of them, at
  commit b25fd38: same_recipe_ab_side_ops_*.txt);
- `adam`: a small Adam group's update in one Triton launch (engine/kernels.py WHOLE_GROUP) against its big tensors;
- `ahead`: one-step replays queued while the host captures the K-step graph (engine/fast/graph.py _ahead) against
  a synced capture with the GPU idle;
- `pair`: a dense, ReLU, dense head as one op (models/_small_dense.py SmallDensePair) against two;
- `pdl`: the Triton kernels launched with programmatic dependent launch (models/_dependent_triton.py) against plain
  launches;
- `unit`: the loss's backward from a cached 1 (engine/cross_entropy.py backward) against loss.backward();
- `finish`: a small map's batchnorm statistics finished and gradient sums added by the element-wise passes
  themselves (models/_norm_act.py FINISHING_PROGRAMS) against finishing launches.
Measured and dropped: a `walk` switch, small dense layers reading their input maps in memory order (commit 6e36ad5,
same_recipe_ab_walk_*.txt); a `pool` switch, a max pool fused into the batchnorm + activation op
(same_recipe_ab_pool_*.txt).

  PYTHONPATH=src CONVFORGE_CACHE=.data python3 benchmarks/same_recipe_ab.py gather mnist-digits-cnn mnist 4
  PYTHONPATH=src CONVFORGE_CACHE=.data python3 benchmarks/same_recipe_ab.py gather cifar-simple-cnn \
      .data/cifar10-jpg-train.tar.gz 3
"""

from __future__ import annotations

import statistics
import sys
import tempfile

from convforge import api
from convforge.bench.train import REFERENCE, SPLIT
from convforge.engine import cross_entropy
from convforge.engine import kernels as engine_kernels
from convforge.engine.fast import gather, graph
from convforge.models import _kernels, _norm_act, _small_conv, _small_dense


def _gather(on: bool) -> None:
    gather.usable = USABLE if on else lambda *args: False


def _loss(on: bool) -> None:
    cross_entropy.ENABLED = on


def _side(on: bool) -> None:
    _kernels.SIDE_BY_SIDE = on


def _ahead(on: bool) -> None:
    graph.GraphStep._ahead = AHEAD if on else lambda self, pos, steps: 0


def _side_conv(on: bool) -> None:
    _small_conv.SIDE_BY_SIDE_COLUMNS = 3 if on else 0


def _pair(on: bool) -> None:
    _small_dense.PAIR = on


def _adam(on: bool) -> None:
    engine_kernels.WHOLE_GROUP = engine_kernels.SLOTS if on else 0


def _pdl(on: bool) -> None:
    _kernels.DEPENDENT_LAUNCH = on


def _unit(on: bool) -> None:
    cross_entropy.CACHED_UNIT = on


def _finish(on: bool) -> None:
    _norm_act.FINISHING_PROGRAMS = FINISHING if on else 0


USABLE, AHEAD, FINISHING = gather.usable, graph.GraphStep._ahead, _norm_act.FINISHING_PROGRAMS
SWITCHES = {"gather": _gather, "loss": _loss, "side": _side, "side-conv": _side_conv, "adam": _adam, "ahead": _ahead,
            "pair": _pair, "pdl": _pdl, "unit": _unit, "finish": _finish}  # fmt: skip


def main(switch: str, name: str, source: str, rounds: int) -> None:
    ref = REFERENCE[name]
    options = {k: v for k, v in ref.items() if k != "source"}
    options.update(split=SPLIT[ref["source"]], schedule="constant", rescale="unit")  # as bench train's plain loop
    turn = SWITCHES[switch]

    def run(seed: int) -> tuple[list[float], float]:
        with tempfile.TemporaryDirectory() as tmp:
            r = api.train(source, seed=seed, out=f"{tmp}/run", progress=False, log=lambda s: None, **options)
        return [row["time_s"] for row in r.history], r.test_accuracy

    for on in (True, False):  # compiles and loads both variants' kernels: not counted
        turn(on)
        run(0)
    results: dict[str, list] = {f"{switch} on": [], f"{switch} off": []}
    for seed in range(1, rounds + 1):
        for on in (True, False):
            turn(on)
            results[f"{switch} {'on' if on else 'off'}"].append(run(seed))
    turn(True)
    for label, runs in results.items():
        train = statistics.fmean(sum(epochs) for epochs, _ in runs)
        first = statistics.fmean(epochs[0] for epochs, _ in runs)
        later = statistics.fmean(statistics.fmean(epochs[1:]) for epochs, _ in runs)
        accs = [round(acc, 4) for _, acc in runs]
        print(f"{name} {label}: train {train:.4f} s, epoch 1 {first:.4f} s, later epochs {later:.4f} s, acc {accs}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
