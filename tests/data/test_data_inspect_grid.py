"""inspect_source reports and sample_grid PNGs."""

from __future__ import annotations

import json
from pathlib import Path

from data_helpers import make_classes, save
from PIL import Image

from convforge.data import DataConfig, inspect_source, load_data, sample_grid


def test_inspect_folder_report(tmp_path: Path) -> None:
    root = make_classes(tmp_path / "set", {"cats": 3, "dogs": 2}, size=(20, 10))
    save(root / "dogs" / "big.png", 5, "L", size=(40, 30))
    save(root / "dogs" / "alpha.png", (1, 2, 3, 4), "RGBA", size=(20, 10))
    (root / "cats" / "broken.jpg").write_text("text")
    r = inspect_source(root)
    assert r["classes"] == ["cats", "dogs"] and r["counts"] == {"all": {"cats": 4, "dogs": 4}} and r["total"] == 8
    assert r["modes"] == {"RGB": 5, "L": 1, "RGBA": 1}
    assert r["sizes"]["width"] == {"min": 20, "median": 20.0, "max": 40} and r["sizes"]["distinct"] == 2
    assert r["sizes"]["most_common"] == {"size": [20, 10], "count": 6}
    assert [(Path(p).name, why) for p, why in r["problems"]] == [("broken.jpg", "not an image (unknown format)")]
    json.dumps(r)  # JSON-able


def test_inspect_builtin(tmp_path: Path) -> None:
    r = inspect_source(DataConfig(source="digits"))
    assert r["total"] == 1797 and r["modes"] == {"L": 1797} and r["sizes"]["most_common"]["size"] == [8, 8]
    assert sum(r["counts"]["test"].values()) == 179
    json.dumps(r)


def test_sample_grid_png(tmp_path: Path) -> None:
    s = load_data(DataConfig(source="digits"), progress=False)
    out = sample_grid(s.train, tmp_path / "grid" / "digits.png", rows=3, cols=4, seed=1)
    with Image.open(out) as im:
        assert im.format == "PNG" and im.width > im.height > 100
    root = make_classes(tmp_path / "set", {"a": 2, "b": 1})
    small = load_data(DataConfig(source=str(root), split=(1.0, 0.0)), progress=False)
    assert sample_grid(small.train, tmp_path / "few.png").is_file()  # fewer images than cells
    assert not list((tmp_path / "grid").glob(".*tmp"))
