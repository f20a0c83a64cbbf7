"""The build cache's size cap: when the cache holds more than the cap, the least recently used
build products go first (dists and seeded weight folders), never an entry a process holds
(cache.reading / a build's exclusive lock). Toolchain entries (the web runtime kit, npm and Dawn
installs) are small and always kept. Stale staging folders of killed builds are removed too.

The cap: $WSD_CACHE_MAX (e.g. 30GiB; 0 = no cap), default 20 GiB (a laptop's spare).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from wsd import cache
from wsd.errors import WsdError
from wsd.paths import cache_root

DEFAULT_CAP = 20 << 30
ENV = "WSD_CACHE_MAX"
EVICTABLE = ("dist-", "random-")  # kinds whose entries are build products
STALE_STAGING_S = 3600  # a staging folder untouched this long belongs to a killed build


@dataclass(frozen=True)
class Entry:
    kind: str
    key: str
    path: Path
    bytes: int
    last_used: float

    @property
    def evictable(self) -> bool:
        return self.kind.startswith(EVICTABLE)


def cap() -> int | None:
    """Bytes the cache may hold (None: no cap)."""
    from wsd.requirements import parse_size

    text = os.environ.get(ENV)
    if text is None:
        return DEFAULT_CAP
    try:
        value = parse_size(text)
    except ValueError as exc:
        raise WsdError(f"{ENV}={text}: {exc}") from None
    return value or None


def _size(folder: Path) -> int:
    return sum(p.lstat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def entries(root: Path | None = None) -> list[Entry]:
    """Every cache entry (a folder with the cache's manifest), least recently used first."""
    root = root or cache_root()
    found = []
    for kind in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        for path in sorted(kind.iterdir()):
            if path.name.startswith(".") or not (path / cache.MANIFEST).is_file():
                continue
            stamp = cache.used_stamp(path)
            used = stamp.stat().st_mtime if stamp.exists() else path.stat().st_mtime
            found.append(Entry(kind.name, path.name, path, _size(path), used))
    return sorted(found, key=lambda e: e.last_used)


def _evict(entry: Entry) -> bool:
    """Remove an entry nobody holds; False when a process holds it (in use: kept) or another
    process's prune removed it since it was listed."""
    lock = cache.lock_file(entry.path)
    with open(lock, "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        try:
            doomed = entry.path.parent / f".{entry.key}.evicting.{os.getpid()}"
            try:
                entry.path.rename(doomed)  # gone for everyone at once; then deleted at leisure
            except FileNotFoundError:  # another process pruning at the same time evicted it first
                return False
            cache._unseal(doomed)
            shutil.rmtree(doomed, ignore_errors=True)
            cache.used_stamp(entry.path).unlink(missing_ok=True)
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
    return True


def remove_stale_staging(root: Path | None = None, older_than_s: float = STALE_STAGING_S) -> int:
    """Staging and half-evicted folders left by killed processes (never trusted, only space)."""
    root = root or cache_root()
    removed = 0
    now = time.time()
    for kind in (p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        for path in kind.glob(".*"):
            if path.is_dir() and now - path.stat().st_mtime > older_than_s:
                cache._unseal(path)
                shutil.rmtree(path, ignore_errors=True)
                removed += 1
    return removed


def prune(limit: int | None = None, echo=print) -> list[Entry]:
    """Evict least recently used build products until the cache fits `limit` (default: the cap)."""
    limit = cap() if limit is None else limit
    remove_stale_staging()
    if limit is None:
        return []
    everything = entries()
    total = sum(e.bytes for e in everything)
    evicted = []
    for entry in everything:
        if total <= limit:
            break
        if entry.evictable and _evict(entry):
            total -= entry.bytes
            evicted.append(entry)
            echo(f"cache: evicted {entry.kind}/{entry.key} ({entry.bytes / 2**30:.2f} GiB, least recently used)")
    if total > limit:
        echo(f"cache: {total / 2**30:.2f} GiB after pruning, over the {limit / 2**30:.2f} GiB cap (the rest is in use)")
    return evicted
