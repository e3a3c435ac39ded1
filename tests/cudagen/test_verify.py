"""verify.compare: the tolerances that decide whether generated code agrees with PyTorch."""

from __future__ import annotations

import numpy as np

from convforge.cudagen.verify import compare


def _probs(rows: list[list[float]]) -> np.ndarray:
    return np.array(rows, dtype=np.float32)


def test_half_precision_flip_on_a_near_tie_is_rounding():
    ref = _probs([[0.502, 0.498], [0.9, 0.1]] + [[0.8, 0.2]] * 998)
    ours = ref.copy()
    ours[0] = [0.499, 0.501]  # the reference's gap 0.004 < fp16's tie band 0.01
    result = compare(ours, ref, "fp16")
    assert result["passed"] and result["top1_agreement"] == 1.0 and result["near_tie_flips"] == 1
    assert not compare(ours, ref, "fp32")["passed"]  # fp32 allows no flip (and its 1e-4 limit fails too)


def test_half_precision_flip_beyond_the_tie_band_counts():
    ref = _probs([[0.51, 0.49]] * 10 + [[0.8, 0.2]] * 990)
    ours = ref.copy()
    ours[:10] = [0.495, 0.505]  # within the 2e-2 limit, but the reference's gap 0.02 > 0.01: ten real flips
    result = compare(ours, ref, "fp16")
    assert result["max_abs_diff"] <= 2e-2 and result["near_tie_flips"] == 0
    assert result["top1_agreement"] == 0.99 and not result["passed"]


def test_sigmoid_output_gap_is_between_p_and_one_minus_p():
    ref = _probs([[0.503]] + [[0.9]] * 999)
    ours = ref.copy()
    ours[0] = 0.497  # gap |2p - 1| = 0.006: a near tie
    assert compare(ours, ref, "bf16")["near_tie_flips"] == 1
    ours[1] = 0.3  # a decisive flip, and beyond the limit
    result = compare(ours, ref, "bf16")
    assert not result["passed"] and result["top1_agreement"] == 0.999
