"""Stratified, seeded splits: per class, shuffle with its own generator and cut by ratio."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ._types import DataSplits, ImageSet, Prepared


def stratified_indices(labels: np.ndarray, fractions: Sequence[float], seed: int) -> list[np.ndarray]:
    """Indices of each part (sorted), cut per class by ``fractions`` (summing to 1).

    Each class uses ``default_rng([seed, label])``, so adding a class does not move the others. A part with a
    positive fraction gets at least one image of every class that has enough images for all such parts.
    """
    labels = np.asarray(labels)
    parts: list[list[np.ndarray]] = [[] for _ in fractions]
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        order = members[np.random.default_rng([seed, int(label)]).permutation(len(members))]
        start = 0
        for i, n in enumerate(_cut(len(members), fractions)):
            parts[i].append(order[start : start + n])
            start += n
    return [np.sort(np.concatenate(p)) if p else np.zeros(0, np.int64) for p in parts]


def _cut(n: int, fractions: Sequence[float]) -> list[int]:
    """Counts per part for n images; part 0 (train) takes the remainder."""
    counts = [int(np.floor(n * f + 0.5)) for f in fractions]
    positive = [i for i, f in enumerate(fractions) if f > 0]
    if n >= len(positive):  # enough images: every positive part gets one
        for i in positive:
            counts[i] = max(counts[i], 1)
    while sum(counts[1:]) > n - (1 if n else 0):  # keep at least one for train
        j = max(range(1, len(counts)), key=lambda k: counts[k])
        counts[j] -= 1
    counts[0] = n - sum(counts[1:])
    return counts


def make_splits(prep: Prepared, ratios: tuple[float, float, float], seed: int) -> DataSplits:
    """Split a Prepared source: ``all`` by the three ratios; given ``train``/``test`` keep them and carve val
    from train by the val ratio unless the source gave a val set."""
    train_r, val_r, test_r = ratios
    parts = prep.parts
    if "all" in parts:
        data = parts["all"]
        idx = stratified_indices(data.labels.numpy(), (train_r, val_r, test_r), seed)
        train, val, test = (data.subset(i) for i in idx)
        method = "stratified per class by ratio"
    else:
        test = parts["test"]
        if "val" in parts and val_r > 0:
            train, val = parts["train"], parts["val"]
            method = "given train/val/test sets"
        else:
            idx = stratified_indices(parts["train"].labels.numpy(), (1.0 - val_r, val_r), seed)
            train, val = (parts["train"].subset(i) for i in idx)
            method = "given test set; val carved from train (stratified, val ratio of train)"
            if "val" in parts:
                method = "given train/test sets; given val set dropped because the val ratio is 0"
    info = dict(prep.info)
    info["split"] = {"ratios": [train_r, val_r, test_r], "seed": seed, "method": method}
    info["counts"] = _counts(train, val, test)
    return DataSplits(train, val, test, list(prep.classes), info)


def _counts(train: ImageSet, val: ImageSet, test: ImageSet) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, s in (("train", train), ("val", val), ("test", test)):
        out[name] = {"total": len(s), "per_class": s.counts()}
    return out
