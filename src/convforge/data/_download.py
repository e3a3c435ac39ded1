"""Find canonical dataset files offline, or download them into the cache with checksums.

Lookup order for a built-in set NAME: ``data_dir/``, ``data_dir/NAME/``, extra folders the set names (e.g.
torchvision's ``data_dir/MNIST/raw/``), ``<cache>/NAME/``, then Debian's ``/usr/share/datasets/NAME/``.
Downloads go to a temp file, are checked, then renamed into ``<cache>/NAME/``; each URL is tried twice.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.request import urlopen

from ..errors import DataError
from ._progress import progress_bar
from .config import DataConfig

SYSTEM_DIR = Path("/usr/share/datasets")
_TIMEOUT_S = 30


@dataclass(frozen=True)
class Remote:
    """A canonical file: its name, mirrors, and the checksums it must match (None = not checked)."""

    name: str
    urls: tuple[str, ...]
    md5: str | None = None
    sha256: str | None = None
    gunzip_md5: str | None = None  # md5 of the uncompressed content (Debian recompressed Fashion-MNIST)


def search_dirs(cfg: DataConfig, name: str, extra: Sequence[str] = ()) -> list[Path]:
    dirs: list[Path] = []
    if cfg.data_dir:
        base = Path(cfg.data_dir).expanduser()
        dirs += [base, base / name] + [base / e for e in extra]
    dirs += [cfg.cache_path() / name, SYSTEM_DIR / name]
    return dirs


def file_digest(path: Path, algo: str, gunzip: bool = False) -> str:
    h = hashlib.new(algo)
    opener = gzip.open if gunzip else open
    with opener(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def mismatch(path: Path, remote: Remote) -> str | None:
    """None when ``path`` matches one of the remote's checksums, else what differs."""
    checks = [("md5", remote.md5, False), ("sha256", remote.sha256, False), ("md5", remote.gunzip_md5, True)]
    checks = [c for c in checks if c[1]]
    if not checks:
        return None
    got = ""
    for algo, want, gunzip in checks:
        try:
            got = file_digest(path, algo, gunzip)
        except (OSError, EOFError, gzip.BadGzipFile):
            continue
        if got == want:
            return None
    return f"{checks[0][0]} {got or 'unreadable'} but expected {checks[0][1]}"


def locate(cfg: DataConfig, name: str, files: Sequence[Remote], extra: Sequence[str] = ()) -> Path | None:
    """The first search folder holding all ``files``; a file with a wrong checksum is a DataError."""
    for d in search_dirs(cfg, name, extra):
        if all((d / f.name).is_file() for f in files):
            for f in files:
                bad = mismatch(d / f.name, f)
                if bad:
                    raise DataError(f"checksum mismatch for {d / f.name}: {bad}; delete it and download it again")
            return d
    return None


def fetch(cfg: DataConfig, name: str, files: Sequence[Remote], progress: bool, extra: Sequence[str] = ()) -> Path:
    """Folder holding all ``files``: found offline, else downloaded into ``<cache>/NAME``."""
    found = locate(cfg, name, files, extra)
    if found is not None:
        return found
    dest = cfg.cache_path() / name
    if not cfg.download:
        raise DataError(_missing(name, files, dest, "download disabled"))
    for f in files:
        if not (dest / f.name).is_file():
            try:
                download(f, dest / f.name, progress)
            except DataError as e:
                raise DataError(_missing(name, files, dest, f"download failed ({e})")) from None
    return dest


def _missing(name: str, files: Sequence[Remote], dest: Path, why: str) -> str:
    names = ", ".join(f.name for f in files)
    return f"{name} not found and {why}: put {names} in {dest} or pass --data-dir DIR"


def download(remote: Remote, dest: Path, progress: bool = True) -> Path:
    """Download ``remote`` to ``dest`` atomically (temp file, check, rename); each URL tried twice."""
    last = "no URL"
    dest.parent.mkdir(parents=True, exist_ok=True)
    for url in remote.urls:
        for _attempt in range(2):
            fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
            os.close(fd)
            tmp = Path(name)
            try:
                _get(url, tmp, progress)
                bad = mismatch(tmp, remote)
                if not bad:
                    os.replace(tmp, dest)
                    return dest
                last = f"checksum mismatch for {url}: {bad}"
            except (OSError, ValueError) as e:  # URLError and HTTPError are OSErrors
                last = f"{type(e).__name__}: {getattr(e, 'reason', None) or e}"
            finally:
                tmp.unlink(missing_ok=True)
    raise DataError(last)


def _get(url: str, tmp: Path, progress: bool) -> None:
    with urlopen(url, timeout=_TIMEOUT_S) as r, open(tmp, "wb") as out:
        total = r.headers.get("Content-Length") if getattr(r, "headers", None) else None
        with progress_bar(int(total) if total else None, f"downloading {url.rsplit('/', 1)[-1]}", progress) as adv:
            while chunk := r.read(1 << 20):
                out.write(chunk)
                adv(len(chunk))


def gunzip_bytes(path: Path) -> bytes:
    """Contents of a .gz file, or of a plain file when it is not gzipped."""
    with open(path, "rb") as f:
        magic = f.read(2)
    if magic == b"\x1f\x8b":
        with gzip.open(path, "rb") as g:
            return g.read()
    return path.read_bytes()
