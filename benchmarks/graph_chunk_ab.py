"""A/B of the captured chunk's one-kernel gather (engine/fast/gather.py) against the eager gathers it replaced: the
same-recipe runs alternate between the two in one process on one GPU (machines differ by several percent, so
separate calls cannot show a 2-3% effect). Prints per variant the mean training seconds, epoch 1 and later epochs.

  PYTHONPATH=src CONVFORGE_CACHE=.data python3 benchmarks/graph_chunk_ab.py mnist-digits-cnn mnist 4
  PYTHONPATH=src CONVFORGE_CACHE=.data python3 benchmarks/graph_chunk_ab.py cifar-simple-cnn \
      .data/cifar10-jpg-train.tar.gz 3
"""

from __future__ import annotations

import statistics
import sys
import tempfile

from convforge import api
from convforge.bench.train import REFERENCE, SPLIT
from convforge.engine.fast import gather


def main(name: str, source: str, rounds: int) -> None:
    ref = REFERENCE[name]
    options = {k: v for k, v in ref.items() if k != "source"}
    options.update(split=SPLIT[ref["source"]], schedule="constant", rescale="unit")  # as bench train's plain loop
    usable = gather.usable
    variants = {"one-kernel gather": usable, "eager gathers": lambda *args: False}

    def run(seed: int) -> tuple[list[float], float]:
        with tempfile.TemporaryDirectory() as tmp:
            r = api.train(source, seed=seed, out=f"{tmp}/run", progress=False, log=lambda s: None, **options)
        return [row["time_s"] for row in r.history], r.test_accuracy

    run(0)  # compiles and loads: not counted
    results: dict[str, list] = {k: [] for k in variants}
    for seed in range(1, rounds + 1):
        for label, check in variants.items():
            gather.usable = check
            results[label].append(run(seed))
    gather.usable = usable
    for label, runs in results.items():
        train = statistics.fmean(sum(epochs) for epochs, _ in runs)
        first = statistics.fmean(epochs[0] for epochs, _ in runs)
        later = statistics.fmean(statistics.fmean(epochs[1:]) for epochs, _ in runs)
        accs = [round(acc, 4) for _, acc in runs]
        print(f"{name} {label}: train {train:.4f} s, epoch 1 {first:.4f} s, later epochs {later:.4f} s, acc {accs}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
