"""DataConfig validation and the dict round trip."""

from __future__ import annotations

import pytest

from convforge._config import from_dict
from convforge.data import DataConfig
from convforge.errors import ConfigError


@pytest.mark.parametrize(
    "split, match",
    [((0.5, 0.1), "sums to 0.6"), ((0.8, 0.1, 0.1, 0.0), "has 4 ratios"), ((0.0, 0.5, 0.5), "train > 0"),
     ((1.1, -0.1), "no negative"), ((0.7,), "has 1 ratios")],
)  # fmt: skip
def test_bad_split_is_config_error(split: tuple[float, ...], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        DataConfig(split=split).validate()


@pytest.mark.parametrize("split", [(0.8, 0.1, 0.1), (0.9, 0.1), (1.0, 0.0), (0.7, 0.0, 0.3)])
def test_good_split(split: tuple[float, ...]) -> None:
    DataConfig(split=split).validate()


def test_two_ratios_mean_train_test() -> None:
    assert DataConfig(split=(0.9, 0.1)).ratios() == (0.9, 0.0, 0.1)


@pytest.mark.parametrize(
    "kw, match",
    [({"channels": 2}, "'channels' must be 1 or 3"), ({"resize": "zoom"}, "'resize' must be one of"),
     ({"image_size": (0, 4)}, "out of range"), ({"image_size": (1, 2, 3)}, "H,W"), ({"source": " "}, "empty")],
)  # fmt: skip
def test_bad_fields(kw: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        DataConfig(**kw).validate()


def test_from_dict_checks_and_coerces() -> None:
    cfg = from_dict(DataConfig, {"split": "0.6,0.2,0.2", "image-size": [32, 32], "channels": "3"})
    assert cfg.split == (0.6, 0.2, 0.2) and cfg.image_size == (32, 32) and cfg.channels == 3
    assert DataConfig(image_size=(24,)).size_hw() == (24, 24)
    with pytest.raises(ConfigError, match="sums to"):
        from_dict(DataConfig, {"split": [0.5, 0.2]})


def test_cache_dir_default(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("CONVFORGE_CACHE", str(tmp_path / "c"))
    assert DataConfig().cache_path() == tmp_path / "c"
    assert DataConfig(cache_dir=str(tmp_path / "d")).cache_path() == tmp_path / "d"
    monkeypatch.delenv("CONVFORGE_CACHE")
    assert DataConfig().cache_path().parts[-2:] == (".cache", "convforge")
