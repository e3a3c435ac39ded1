"""Folder datasets: discover class folders, decode every image (in forked processes for big folders), cache.

Default preprocessing when the config leaves it open (recorded in info['preprocessing']):
- image_size None: the common size when all images share one, else a square of the median shorter side,
  clamped to [32, 128] px, fitted with ``cfg.resize``;
- channels None: 3 when any image is in a colour mode (RGB, RGBA, P, CMYK, ...), else 1.
"""

from __future__ import annotations

import dataclasses
import math
import mmap
import multiprocessing
import os
import sys
import warnings
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from ._decode import COLOUR_MODES, BadImage, decode_array, read_header
from ._layout import Layout, find_layout
from ._progress import progress_bar
from ._types import ImageSet, Prepared
from .cache import cache_key, cached
from .config import DataConfig

POOL_MIN_FILES = 1000  # below this a thread pool costs more than it saves
_CHUNK = 128


def load_folder(root: str | Path, cfg: DataConfig, progress: bool = True, fingerprint: Any = None) -> Prepared:
    """Decode the folder ``root`` into a Prepared source (``all`` or given train/val/test parts), cached.

    ``fingerprint`` replaces the file listing in the cache key (e.g. the archive the folder came from).
    """
    root = Path(root).expanduser().resolve()
    layout = find_layout(root, cfg.min_classes)
    if fingerprint is None:
        fingerprint = _fingerprint(root, layout)
    key = cache_key(
        source=str(root), files=fingerprint, size=cfg.size_hw() or "auto", channels=cfg.channels or "auto",
        resize=cfg.resize,
    )  # fmt: skip
    prep = cached(cfg.cache_path(), key, lambda: _decode_layout(root, layout, cfg, progress))
    if cfg.strict and prep.info.get("skipped"):
        path, reason = prep.info["skipped"][0]
        raise DataError(f"cannot read image {path}: {reason}; replace or remove the file (or drop --strict)")
    return prep


def _fingerprint(root: Path, layout: Layout) -> str:
    import hashlib

    h = hashlib.sha256()
    for split, per in layout.files.items():
        for cls, files in per.items():
            for p in files:
                st = p.stat()
                h.update(f"{split}\0{cls}\0{p.relative_to(root)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _all_files(layout: Layout) -> list[tuple[str, str, Path]]:
    return [(s, c, p) for s, per in layout.files.items() for c, files in per.items() for p in files]


def _decode_layout(root: Path, layout: Layout, cfg: DataConfig, progress: bool) -> Prepared:
    entries = _all_files(layout)
    paths = [p for _, _, p in entries]
    pre = _preprocessing(paths, cfg, progress)
    size = (pre["height"], pre["width"])
    images, ok, problems = decode_files(paths, pre["channels"], size, cfg.resize, cfg.strict, progress)
    classes = layout.classes
    index = {c: i for i, c in enumerate(classes)}
    labels = np.array([index[c] for _, c, _ in entries], np.int64)
    splits = np.array([s for s, _, _ in entries])
    _check_readable(entries, ok, problems)
    parts = {}
    for split in layout.split_dirs:
        keep = ok & (splits == split)
        parts[split] = ImageSet.from_numpy(images[keep], labels[keep], classes)
    info = {
        "source": str(root),
        "kind": "folder",
        "layout": layout.kind,
        "folders": {s: str(d) for s, d in layout.split_dirs.items()},
        "files": len(paths),
        "ignored_non_image_files": layout.ignored,
        "skipped": [[str(p), r] for p, r in problems],
        "preprocessing": pre,
    }
    return Prepared(parts, classes, info)


def _check_readable(entries: list[tuple[str, str, Path]], ok: np.ndarray, problems: list) -> None:
    seen: dict[tuple[str, str], bool] = {}
    for (split, cls, _), good in zip(entries, ok, strict=True):
        seen[(split, cls)] = seen.get((split, cls), False) or bool(good)
    for (split, cls), good in seen.items():
        if not good:
            folder = next(p for s, c, p in entries if s == split and c == cls).parent
            raise DataError(
                f"class folder {folder} has no readable image ({len(problems)} files skipped in all); "
                "replace the files or remove the folder"
            )


def _preprocessing(paths: list[Path], cfg: DataConfig, progress: bool) -> dict[str, Any]:
    """Resolve image size and channels, scanning headers only when the config leaves one open."""
    size, channels = cfg.size_hw(), cfg.channels
    pre: dict[str, Any] = {"resize": cfg.resize}
    if size is None or channels is None:
        sizes, modes = scan_headers(paths, progress)
        if size is None:
            size, pre["size_rule"] = auto_size(sizes)
        if channels is None:
            channels = 3 if any(m in COLOUR_MODES for m in modes) else 1
            pre["channels_rule"] = "3: some images are colour" if channels == 3 else "1: all images are grayscale"
    pre.update(channels=channels, height=size[0], width=size[1])
    return pre


def auto_size(sizes: list[tuple[int, int]]) -> tuple[tuple[int, int], str]:
    """((H, W), rule) from header sizes (w, h): the common size, else the clamped median shorter side."""
    distinct = set(sizes)
    if len(distinct) == 1:
        w, h = next(iter(distinct))
        return (h, w), "all images share this size"
    if not distinct:
        return (64, 64), "no readable image header; default 64x64"
    side = int(np.clip(np.median([min(s) for s in sizes]), 32, 128))
    return (side, side), "images differ in size: median shorter side, clamped to [32, 128], square"


def scan_headers(paths: list[Path], progress: bool = False) -> tuple[list[tuple[int, int]], list[str]]:
    """Sizes (w, h) and modes of all readable headers (unreadable files are skipped here)."""

    def one(p: Path) -> tuple[tuple[int, int], str] | None:
        try:
            return read_header(p)
        except BadImage:
            return None

    with progress_bar(len(paths), "reading headers", progress and len(paths) > POOL_MIN_FILES) as advance:
        found = list(_map(one, paths, advance))
    good = [f for f in found if f is not None]
    return [s for s, _ in good], [m for _, m in good]


def _map(fn: Any, items: list, advance: Any) -> Any:
    """Map in order, in a thread pool for big lists (header reads: light; decoding goes to processes, below)."""
    if len(items) <= POOL_MIN_FILES:
        for x in items:
            yield fn(x)
            advance(1)
        return
    chunks = [items[i : i + _CHUNK] for i in range(0, len(items), _CHUNK)]
    pool = ThreadPoolExecutor(max_workers=min(16, os.cpu_count() or 2))
    try:
        for out in pool.map(lambda c: [fn(x) for x in c], chunks):
            yield from out
            advance(len(out))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # a strict error stops the queued chunks


@dataclasses.dataclass
class _DecodeJob:
    paths: list[Path]
    channels: int
    size: tuple[int, int]
    resize: str
    images: np.ndarray  # N x C x H x W uint8, written in place (shared memory when processes decode)

    def run(self, start: int, stop: int) -> list[tuple[int, str]]:
        """Decode files start..stop-1 into their rows; (index, reason) of each unreadable one."""
        bad = []
        for i in range(start, stop):
            try:
                self.images[i] = decode_array(self.paths[i], self.channels, self.size, self.resize)
            except BadImage as e:
                bad.append((i, str(e)))
        return bad


_FORKED_JOB: list[_DecodeJob] = []  # a forked decode worker's job, inherited from the parent (not pickled)


def _set_forked_job(job: _DecodeJob) -> None:
    _FORKED_JOB[:] = [job]


def _run_forked(start: int, stop: int) -> list[tuple[int, str]]:
    return _FORKED_JOB[0].run(start, stop)


def decode_workers() -> int:
    """Decode processes for a big folder: the usable cores (at most 16); 0 = decode in threads (no fork here).

    Why processes: Pillow holds the GIL for most of a small image's decode (opening, EXIF, crop, numpy copy):
    16 threads decoded Imagenette-128 at the speed of one (6,500 files in 2.6 s on a 16-core H200 host, 0.4 ms a
    file serially), while forked workers scale with the cores. Fork, as PyTorch's DataLoader workers do: the
    children inherit the job and never touch CUDA; a spawned child would import torch again (~4 s).
    """
    if sys.platform != "linux" or "fork" not in multiprocessing.get_all_start_methods():
        return 0
    cores = len(os.sched_getaffinity(0))
    return min(16, cores) if cores >= 2 else 0


def _decode_ranges(job: _DecodeJob, workers: int, advance: Any) -> Any:
    """(index, reason) of the unreadable files, range by range in order: in `workers` forked processes, else in
    threads (big lists) or here."""
    n = len(job.paths)
    ranges = [(a, min(a + _CHUNK, n)) for a in range(0, n, _CHUNK)]
    if workers:
        context = multiprocessing.get_context("fork")
        pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_set_forked_job, initargs=(job,))
        run = _run_forked
    elif n > POOL_MIN_FILES:
        pool, run = ThreadPoolExecutor(max_workers=min(16, os.cpu_count() or 2)), job.run
    else:
        pool, run = None, job.run
    try:
        with warnings.catch_warnings():  # forking a process that runs threads: safe here (see decode_workers)
            warnings.filterwarnings("ignore", "This process .* is multi-threaded", DeprecationWarning)
            results = pool.map(run, *zip(*ranges)) if pool else (run(a, b) for a, b in ranges)
            done = 0
            try:
                for (a, b), bad in zip(ranges, results):
                    yield from bad
                    advance(b - a)
                    done += 1
            except BrokenProcessPool:  # a worker was killed (out of memory?): the rest here, in this process
                for a, b in ranges[done:]:
                    yield from job.run(a, b)
                    advance(b - a)
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)  # a strict error stops the queued ranges


def decode_files(
    paths: list[Path], channels: int, size: tuple[int, int], resize: str, strict: bool = False, progress: bool = True
) -> tuple[np.ndarray, np.ndarray, list[tuple[Path, str]]]:
    """Decode ``paths`` into N x C x H x W uint8; returns (images, ok mask, problems (path, reason)).

    Rows of unreadable files are left zero and ``ok`` False; with ``strict`` the first one is a DataError.
    """
    shape = (len(paths), channels, *size)
    workers = decode_workers() if len(paths) > POOL_MIN_FILES else 0
    if workers:
        shared = mmap.mmap(-1, max(1, math.prod(shape)))  # anonymous and shared: forked workers write into it
        images = np.frombuffer(shared, np.uint8, math.prod(shape)).reshape(shape)
    else:
        images = np.zeros(shape, np.uint8)
    ok = np.ones(len(paths), bool)
    problems: list[tuple[Path, str]] = []
    job = _DecodeJob(paths, channels, size, resize, images)
    with progress_bar(len(paths), "decoding images", progress and len(paths) > 200) as advance:
        for i, reason in _decode_ranges(job, workers, advance):
            if strict:
                raise DataError(f"cannot read image {paths[i]}: {reason}; replace or remove it (or drop --strict)")
            ok[i] = False  # its row was never written: zero
            problems.append((paths[i], reason))
    return images, ok, problems
