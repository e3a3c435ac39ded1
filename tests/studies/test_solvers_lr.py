"""compare-solvers and lr-find on digits with tiny budgets: files, rows, sane numbers, errors."""

from __future__ import annotations

import json
import math

import pytest

from convforge.engine import TrainConfig
from convforge.errors import ConfigError
from convforge.studies.lr_find import lr_find, suggest_lr, suggestions
from convforge.studies.solvers import compare_solvers, sweep_lrs


def test_compare_solvers_table_plot_and_sweep(tmp_path, cache_dir):
    out = tmp_path / "cs"
    r = compare_solvers(
        solvers=("sgdm", "adam"), epochs=2, sweep=2, out=out, device="cpu", cache_dir=str(cache_dir), log=lambda s: None
    )
    assert [row["solver"] for row in r.rows] == ["sgdm", "adam"]
    for name in ("curves.png", "results.json", "report.md"):
        assert (out / name).stat().st_size > 0
    data = json.loads((out / "results.json").read_text())
    assert len(data["trials"]) == 4 and data["environment"]["torch"]
    assert all(row["val_acc"] > 0.5 and row["train_time_s"] > 0 for row in r.rows)
    assert "sgdm" in r.text and "| adam |" in r.markdown


def test_compare_solvers_time_budget_and_errors(tmp_path, cache_dir):
    r = compare_solvers(
        solvers=("sgd",),
        time_budget_s=0.5,
        out=tmp_path / "t",
        device="cpu",
        cache_dir=str(cache_dir),
        log=lambda s: None,
    )
    assert r.rows[0]["epochs"] >= 1 and r.rows[0]["train_time_s"] < 5
    with pytest.raises(ConfigError, match="unknown solver 'sgdx'"):
        compare_solvers(solvers=("sgdx",), out=tmp_path / "x")
    with pytest.raises(ConfigError, match="--sweep"):
        compare_solvers(solvers=("sgd",), sweep=0, out=tmp_path / "y")


def test_sweep_lrs_are_centred_half_decades():
    assert sweep_lrs(0.01, 1) == [0.01]
    assert sweep_lrs(0.01, 3) == [0.00316, 0.01, 0.0316]


def test_suggestions_on_a_known_curve():
    lrs = [10 ** (-6 + 6 * i / 99) for i in range(100)]
    # loss falls fastest around lr = 1e-3, is lowest near 1e-1.5, then rises
    smooth = [2 - math.tanh(2 * (math.log10(lr) + 3)) + max(0.0, math.log10(lr) + 1.5) ** 2 for lr in lrs]
    s = suggestions({"lr": lrs, "loss": smooth, "smoothed": smooth})
    assert 5e-4 < s["steepest"] < 2e-3
    assert s["min10"] == pytest.approx(s["min_loss_lr"] / 10)


def test_lr_find_study_and_suggest_lr(tmp_path, cache_dir):
    r = lr_find(steps=40, out=tmp_path / "lr", device="cpu", cache_dir=str(cache_dir), solver="sgdm")
    lr = r.extra["suggested_lr"]
    assert 1e-7 < lr < 10
    assert (tmp_path / "lr" / "lr_find.png").stat().st_size > 0
    assert {row["method"] for row in r.rows} == {"steepest", "min10"}
    cfg = TrainConfig(device="cpu", cache_dir=str(cache_dir))
    assert 1e-7 < suggest_lr(cfg, steps=30) < 10


@pytest.mark.parametrize(
    "kw, match",
    [({"min_lr": 1.0, "max_lr": 0.1}, "min-lr"), ({"steps": 3}, "--steps"), ({"method": "best"}, "--method")],
)
def test_lr_find_rejects_bad_options(tmp_path, kw, match):
    with pytest.raises(ConfigError, match=match):
        lr_find(out=tmp_path / "bad", **kw)
