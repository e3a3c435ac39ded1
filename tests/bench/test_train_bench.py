"""bench train's parts on CPU: the plain reference loop trains, and the report shows means, ratios and every run."""

from __future__ import annotations

from convforge.bench.train import _summary, markdown, plain_loop
from convforge.data import DataConfig, load_data


def test_plain_loop_trains_the_reference_mlp_on_cpu():
    splits = load_data(DataConfig(source="digits", split=(0.8, 0.0, 0.2)), progress=False)
    recipe = dict(source="digits", model="mlp", solver="adam", batch_size=32, epochs=3)
    row = plain_loop(recipe, splits, seed=0, device="cpu")
    assert row["acc"] > 0.85 and row["train_s"] > 0 and row["images"] == len(splits.train.labels)
    assert row["peak_mib"] == 0.0  # no GPU: no device memory to report


def _variant(accs, secs, peak):
    runs = [dict(train_s=s, total_s=s + 1, acc=a, peak_mib=peak, images=1000) for a, s in zip(accs, secs)]
    return {"runs": runs, "summary": _summary(runs), "options": {}}


def test_markdown_has_speedup_memory_ratio_and_every_run():
    results = {
        "environment": dict(device="GPU", torch="2.x", cuda="13", cudnn="9", date="2026-11-22"),
        "seeds": 3,
        "baseline_seeds": 2,
        "wall_s": 10,
        "recipes": {
            "toy": {
                "recipe": {},
                "source": "digits",
                "plain": _variant([0.90, 0.92], [10.0, 12.0], 100.0),
                "convforge": _variant([0.91, 0.93, 0.92], [1.0, 1.0, 1.0], 150.0),
            }
        },
    }
    md = markdown(results)
    assert "| toy | convforge | 3 | 1.00 ± 0.00 |" in md and "| 1.50x | 11.0x |" in md
    assert "The plain loop ran 2 seed(s), the convforge variants 3" in md
    assert "| toy | convforge | 91.00 / 93.00 / 92.00 | 1.00 / 1.00 / 1.00 |" in md
    assert "| toy | plain | 90.00 / 92.00 | 10.00 / 12.00 |" in md
