"""baselines: classical machine learning on the SAME split as the CNN (same DataConfig -> same load_data split).

Raw pixels (x/255, standardized per pixel on the training set) for logistic regression, a linear SVM, an RBF SVM
(on a subsample: its fit is quadratic in the sample count), k-nearest neighbours and a random forest; HOG features
(scikit-image) for a second linear SVM. `--run RUN_DIR` takes the split from a Run's config.yaml and puts the
CNN's test accuracy (meta.json) beside them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, ConvforgeError
from ._common import StudyResult, plt, render, save_figure, study_dir, write_report

METHODS = ("logreg", "linear-svm", "rbf-svm", "knn", "random-forest", "hog-linear-svm")
DATA_KEYS = (
    "source",
    "split",
    "seed",
    "data_dir",
    "cache_dir",
    "image_size",
    "channels",
    "resize",
    "strict",
    "download",
)
COLUMNS = [
    ("method", "method", ""),
    ("features", "features", ""),
    ("train_images", "train images", ",d"),
    ("fit_time_s", "fit s", ".2f"),
    ("test_acc", "test acc", ".2%"),
]


def _estimator(name: str, seed: int):
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.svm import SVC, LinearSVC

    return {
        "logreg": lambda: LogisticRegression(max_iter=500, C=1.0),
        "linear-svm": lambda: LinearSVC(C=0.01, dual="auto", max_iter=5000, random_state=seed),
        "rbf-svm": lambda: SVC(kernel="rbf", C=10.0, gamma="scale"),
        "knn": lambda: KNeighborsClassifier(n_neighbors=5, n_jobs=-1),
        "random-forest": lambda: RandomForestClassifier(n_estimators=200, n_jobs=-1, random_state=seed),
        "hog-linear-svm": lambda: LinearSVC(C=0.1, dual="auto", max_iter=5000, random_state=seed),
    }[name]()


def hog_features(images: np.ndarray) -> np.ndarray:
    """HOG per image (N x C x H x W uint8); images under 32 px are upscaled 2x first so cells hold 4+ pixels."""
    from skimage.feature import hog
    from skimage.transform import rescale

    _, c, h, w = images.shape
    factor = 2 if min(h, w) < 32 else 1
    cell = max(4, min(h, w) * factor // 4)
    out = []
    for img in images:
        x = img.transpose(1, 2, 0).astype(np.float32) / 255
        if factor > 1:
            x = rescale(x, factor, channel_axis=-1, order=1)
        if c == 1:
            x = x[..., 0]
        out.append(
            hog(
                x,
                orientations=9,
                pixels_per_cell=(cell, cell),
                cells_per_block=(2, 2),
                channel_axis=-1 if c > 1 else None,
            )
        )
    return np.stack(out).astype(np.float32)


def _subsample(n: int, limit: int | None, labels: np.ndarray, seed: int) -> np.ndarray:
    """A stratified random subset of at most `limit` indices (all when limit is None or larger)."""
    if limit is None or n <= limit:
        return np.arange(n)
    from sklearn.model_selection import train_test_split

    idx, _ = train_test_split(np.arange(n), train_size=limit, stratify=labels, random_state=seed)
    return np.sort(idx)


def data_config_from_run(run_dir: str | Path) -> tuple[dict[str, Any], float | None]:
    """The DataConfig fields and the CNN's test accuracy of a Run folder."""
    from ..run import Run

    run = Run.open(run_dir, need_weights=False)
    cfg = run.config_dict()
    if "source" not in cfg:
        raise ConvforgeError(f"{run.path / 'config.yaml'} has no 'source'; give a Run made by `convforge train`")
    return {k: cfg[k] for k in DATA_KEYS if k in cfg}, run.meta.get("test_accuracy")


def baselines(
    source: str = "digits",
    *,
    methods: tuple[str, ...] = METHODS,
    run: str | Path | None = None,
    max_train: int | None = 20000,
    svm_subsample: int = 5000,
    out: str | Path | None = None,
    log: Callable[[str], None] = print,
    **data_options: Any,
) -> StudyResult:
    """Fit each classical method on the training split, score it on the test split; table + bar chart."""
    from .._config import from_dict
    from ..data import DataConfig, load_data

    for m in methods:
        if m not in METHODS:
            raise ConfigError(f"unknown baseline '{m}'; choose from {', '.join(METHODS)}")
    cnn_acc = None
    fields = {"source": source, **data_options}
    if run is not None:
        fields, cnn_acc = data_config_from_run(run)
    cfg = from_dict(DataConfig, fields)
    splits = load_data(cfg, progress=False)
    if not len(splits.test.labels):
        raise ConvforgeError(f"{cfg.source} has no test images; give --split with a test fraction, e.g. 0.8,0.1,0.1")
    folder = study_dir("baselines", out)
    x_tr, y_tr = splits.train.images.numpy(), splits.train.labels.numpy()
    x_te, y_te = splits.test.images.numpy(), splits.test.labels.numpy()
    keep = _subsample(len(y_tr), max_train, y_tr, cfg.seed)
    x_tr, y_tr = x_tr[keep], y_tr[keep]
    feats = _Features(x_tr, x_te)
    rows = []
    for name in methods:
        log(f"{name} ...")
        rows.append(_fit(name, feats, y_tr, y_te, svm_subsample, cfg.seed))
    if cnn_acc is not None:
        rows.append(
            {
                "method": "cnn (run)",
                "features": "learned",
                "train_images": len(splits.train.labels),
                "fit_time_s": _run_time(run),
                "test_acc": cnn_acc,
            }
        )
    text, md = render(rows, COLUMNS)
    files = {"plot": _plot(rows, folder / "baselines.png")}
    notes = [
        f"data: {cfg.source}, split {list(cfg.split)} seed {cfg.seed}: {len(splits.train.labels)} train, "
        f"{len(y_te)} test images, {len(splits.classes)} classes (the same split `convforge train` uses)",
        f"raw pixels standardized on the training set; rbf-svm fits on at most {svm_subsample} images",
    ]
    files.update(write_report(folder, "Classical baselines", md, rows, {"data": fields, "run": str(run)}, notes))
    return StudyResult("baselines", folder, rows, text, md, files)


class _Features:
    """Standardized pixels and HOG features, each computed once and shared by the methods that use them."""

    def __init__(self, x_tr: np.ndarray, x_te: np.ndarray):
        self.x_tr, self.x_te = x_tr, x_te
        self._pixels = self._hog = None

    def pixels(self) -> tuple[np.ndarray, np.ndarray]:
        if self._pixels is None:
            tr = self.x_tr.reshape(len(self.x_tr), -1).astype(np.float32) / 255
            te = self.x_te.reshape(len(self.x_te), -1).astype(np.float32) / 255
            mean, std = tr.mean(0), tr.std(0) + 1e-3
            self._pixels = ((tr - mean) / std, (te - mean) / std)
        return self._pixels

    def hog(self) -> tuple[np.ndarray, np.ndarray]:
        if self._hog is None:
            self._hog = (hog_features(self.x_tr), hog_features(self.x_te))
        return self._hog


def _fit(name: str, feats: _Features, y_tr: np.ndarray, y_te: np.ndarray, svm_subsample: int, seed: int) -> dict:
    t0 = time.perf_counter()
    x_tr, x_te = feats.hog() if name.startswith("hog") else feats.pixels()
    if name == "rbf-svm":
        keep = _subsample(len(y_tr), svm_subsample, y_tr, seed)
        x_tr, y_tr = x_tr[keep], y_tr[keep]
    model = _estimator(name, seed).fit(x_tr, y_tr)
    fit_time = time.perf_counter() - t0  # HOG extraction of the training set counted in its fit
    acc = float((model.predict(x_te) == y_te).mean())
    return {
        "method": name,
        "features": "hog" if name.startswith("hog") else "pixels",
        "train_images": len(y_tr),
        "fit_time_s": round(fit_time, 3),
        "test_acc": acc,
    }


def _run_time(run) -> float | None:
    from ..run import Run

    return Run.open(run, need_weights=False).meta.get("train_time_s")


def _plot(rows: list[dict], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7, 0.6 + 0.45 * len(rows)))
    names = [r["method"] for r in rows][::-1]
    accs = [r["test_acc"] for r in rows][::-1]
    bars = ax.barh(names, accs, color=["tab:red" if n.startswith("cnn") else "tab:blue" for n in names])
    for bar, acc in zip(bars, accs):
        ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f" {acc:.1%}", va="center")
    ax.set(xlim=(0, 1.1), xlabel="test accuracy", title="classical baselines on the CNN's split")
    return save_figure(fig, path)
