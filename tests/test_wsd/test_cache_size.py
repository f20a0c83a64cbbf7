"""The build cache's size cap (wsd/cache_size.py): least recently used build products go first,
an entry a process holds never goes, toolchain entries stay; a full disk is one clear error that
leaves nothing half-made."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from wsd import cache, cache_size


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.setenv("WSD_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def made(kind: str, n: int, size: int = 1 << 20) -> Path:
    """A real entry of `size` bytes through the cache's own get_or_build."""

    def build(out: Path) -> list[str]:
        (out / "blob").write_bytes(os.urandom(size))
        return ["blob"]

    return cache.get_or_build(kind, {"n": n}, build, echo=lambda *_: None)


def used_at(entry: Path, when: float) -> None:
    os.utime(cache.used_stamp(entry), (when, when))


def test_least_recently_used_build_products_go_first(root):
    old, mid, new = (made("dist-webgpu", i) for i in range(3))
    kit = made("webrt", 0)
    for age, entry in ((300, old), (200, kit), (100, mid), (0, new)):
        used_at(entry, time.time() - age)
    evicted = cache_size.prune(limit=int(2.5 * (1 << 20)), echo=lambda *_: None)
    assert [e.path for e in evicted] == [old, mid]  # the kit is older than mid, and kept
    assert not old.exists() and not mid.exists() and new.exists() and kit.exists()
    assert cache.verify(new) == []


def test_an_entry_in_use_is_never_evicted(root):
    held, free = made("dist-llvm", 0), made("dist-llvm", 1)
    used_at(held, time.time() - 100)
    with cache.reading(held):  # another process would hold it the same way (flock)
        used_at(held, time.time() - 100)
        evicted = cache_size.prune(limit=0, echo=lambda *_: None)
    assert [e.path for e in evicted] == [free] and held.exists() and cache.verify(held) == []


def test_two_prunes_at_once_do_not_trip_over_each_other(root):
    """Two processes list the same entries and both try to evict the oldest (CI's two test workers
    beside a build did): the second finds it gone and goes on, no FileNotFoundError."""
    first, second = made("dist-llvm", 0), made("dist-llvm", 1)
    used_at(first, time.time() - 100)
    listed = cache_size.entries()  # what the second process saw before the first evicted
    assert [e.path for e in cache_size.prune(limit=int(1.5 * (1 << 20)), echo=lambda *_: None)] == [first]
    assert not cache_size._evict(listed[0])  # already gone: not counted as this prune's
    assert second.exists() and cache.verify(second) == []


def test_the_cap_holds_under_a_loop_of_distinct_builds(root, monkeypatch):
    """Twelve builds of 1 MiB under a 4.5 MiB cap: the cache never holds more than the cap after a
    build's prune, and the newest entries are the ones kept."""
    monkeypatch.setenv(cache_size.ENV, "4.5MiB")
    sizes = []
    for i in range(12):
        made("dist-webgpu", i)
        cache_size.prune(echo=lambda *_: None)
        sizes.append(sum(e.bytes for e in cache_size.entries()))
    assert max(sizes) <= 4.5 * (1 << 20) and sizes[-1] > 3 << 20
    kept = {e.path.name for e in cache_size.entries()}
    assert kept == {cache.key_of({"n": i}) for i in range(8, 12)}


def test_a_killed_builds_staging_is_never_trusted_and_is_swept(root):
    """A build interrupted half-way leaves no entry; a kill -9 leaves its staging folder behind,
    which is swept once stale (the real kill -9 of a build: test_build_kill.py)."""

    def killed(out: Path) -> list[str]:
        (out / "blob").write_bytes(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cache.get_or_build("dist-llvm", {"n": 9}, killed, echo=lambda *_: None)
    staging = root / "dist-llvm" / ".stale.abc"
    staging.mkdir()
    os.utime(staging, (time.time() - 2 * cache_size.STALE_STAGING_S,) * 2)
    assert cache_size.entries() == []
    assert cache_size.remove_stale_staging() == 1 and not staging.exists()


def test_the_cap_is_read_from_the_environment(monkeypatch):
    monkeypatch.delenv(cache_size.ENV, raising=False)
    assert cache_size.cap() == cache_size.DEFAULT_CAP
    monkeypatch.setenv(cache_size.ENV, "0")
    assert cache_size.cap() is None
    monkeypatch.setenv(cache_size.ENV, "lots")
    with pytest.raises(cache_size.WsdError, match="WSD_CACHE_MAX=lots"):
        cache_size.cap()


def test_wsd_cache_lists_sizes_and_prunes(root):
    made("dist-llvm", 0)
    made("npm", 0)
    env = {**os.environ, "WSD_CACHE_DIR": str(root)}
    listed = subprocess.run([sys.executable, "-m", "wsd", "cache", "list"], capture_output=True, text=True, env=env)
    assert "dist-llvm/" in listed.stdout and "npm/" in listed.stdout and "(toolchain: kept)" in listed.stdout
    pruned = subprocess.run(
        [sys.executable, "-m", "wsd", "cache", "prune", "--max", "0"], capture_output=True, text=True, env=env
    )
    assert "evicted 1 entry" in pruned.stdout and "1 entries" in pruned.stdout


@pytest.fixture
def small_disk(tmp_path):
    """A 6 MiB filesystem (tmpfs): big enough for the cache's folders, too small for a build."""
    mount = tmp_path / "small"
    mount.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.fail("needs root to mount a tmpfs (this machine kind runs as root)")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_is_one_clear_error_and_keeps_nothing(small_disk):
    env = {**os.environ, "WSD_CACHE_DIR": str(small_disk)}
    build = "build --model sd15-tiny --random-init --target llvm --quiet --out".split()
    proc = subprocess.run(
        [sys.executable, "-m", "wsd", *build, str(small_disk.parent / "out")],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert "is full" in proc.stderr and "No space left on device" in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and len(lines) <= 3, proc.stderr[-2000:]
    leftovers = [
        p for p in small_disk.rglob("*") if p.is_dir() and p.name.startswith(".") and not p.name.endswith(".lock")
    ]
    assert leftovers == []  # no staging folder left behind
    assert all(cache.verify(e.path) == [] for e in cache_size.entries(small_disk))
