"""Content-keyed build cache in the user cache folder.

An entry is a folder named by the key of everything its build depends on, holding the
outputs and a manifest of their sha256. An entry is used only if every file still
hashes as recorded; otherwise it is rebuilt, never trusted. Each entry has a lock file beside
it (`<kind>/.<key>.lock`): a build holds it exclusively, a reader shared (`reading`), so the
size cap (wsd/cache_size.py) never evicts an entry in use; `<kind>/.<key>.used` stamps its last use.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

from wsd.digests import file_digest, remember
from wsd.errors import WsdError
from wsd.paths import cache_root

MANIFEST = "manifest.json"
READ_ONLY = stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH
EXECUTABLE = stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH


def sha256_file(path: Path) -> str:
    return file_digest(path).hex()


def key_of(inputs: dict) -> str:
    """A short stable key for a JSON-able description of a build's inputs."""
    blob = json.dumps(inputs, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:20]


def entry_digests(entry: Path, under: str = "") -> dict[str, str]:
    """name -> sha256 hex that an entry's manifest records, for files under a subfolder."""
    files = json.loads((entry / MANIFEST).read_text())["files"]
    prefix = f"{under}/" if under else ""
    return {name[len(prefix) :]: digest for name, digest in files.items() if name.startswith(prefix)}


def verify(entry: Path) -> list[str]:
    """Problems with a cache entry (empty when it is whole and untampered)."""
    try:
        manifest = json.loads((entry / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        return [f"manifest unreadable: {exc}"]
    problems = []
    for name, expected in manifest.get("files", {}).items():
        path = entry / name
        if not path.is_file():
            problems.append(f"{name}: missing")
        elif sha256_file(path) != expected:
            problems.append(f"{name}: sha256 differs from the manifest")
    if not manifest.get("files"):
        problems.append("manifest lists no files")
    return problems


@contextmanager
def _locked(path: Path, shared: bool = False):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def lock_file(entry: Path) -> Path:
    return entry.parent / f".{entry.name}.lock"


def used_stamp(entry: Path) -> Path:
    return entry.parent / f".{entry.name}.used"


def _mark_used(entry: Path) -> None:
    used_stamp(entry).touch()


@contextmanager
def reading(entry: Path):
    """Hold an entry while it is read (a build's weights, a dist being published): the size cap
    evicts only entries nobody holds."""
    with _locked(lock_file(entry), shared=True):
        _mark_used(entry)
        yield entry


class CacheFullError(WsdError):
    """The disk under the cache folder is full."""


def _no_space(exc: BaseException) -> bool:
    return getattr(exc, "errno", None) == errno.ENOSPC or "No space left on device" in str(exc)


def _disk_full(kind: str, exc: BaseException) -> CacheFullError:
    return CacheFullError(
        f"the disk under {cache_root()} is full (building {kind}: No space left on device); nothing was kept. "
        "Free space, or lower the cache cap: WSD_CACHE_MAX=10GiB wsd cache prune"
    )


def get_or_build(
    kind: str,
    inputs: dict,
    build: Callable[[Path], list[str]],
    echo: Callable[[str], None] = print,
    force: bool = False,
) -> Path:
    """Return the verified entry for `inputs`, building it when absent, corrupt or forced.

    `build(out_dir)` writes its outputs into out_dir and returns their names.
    """
    key = key_of(inputs)
    entry = cache_root() / kind / key
    if not force:  # a hit needs only a shared hold: readers of one entry never wait for each other
        with _locked(lock_file(entry), shared=True):
            if entry.exists() and not verify(entry):
                _mark_used(entry)
                return entry
    with _locked(lock_file(entry)):
        if entry.exists() and not force:
            problems = verify(entry)
            if not problems:  # another process built it meanwhile
                _mark_used(entry)
                return entry
            echo(f"{kind} cache entry {key} is corrupt ({'; '.join(problems)}); rebuilding")
        # a build killed at any point leaves only this staging folder, which nothing trusts
        # (wsd/cache_size.py removes it); the entry appears by one rename once it is whole
        try:
            staging = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=entry.parent))
        except OSError as exc:
            if _no_space(exc):
                raise _disk_full(kind, exc) from None
            raise
        staging.chmod(0o755)  # mkdtemp makes it private; the cache is meant to be shared
        try:
            names = build(staging)
            manifest = {"key": key, "inputs": inputs, "files": {n: sha256_file(staging / n) for n in names}}
            (staging / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
            _seal(staging)
            if entry.exists():
                _unseal(entry)
                shutil.rmtree(entry)
            staging.rename(entry)
        except Exception as exc:  # ENOSPC, or a tool's (emcc, safetensors) report of it
            if _no_space(exc):
                raise _disk_full(kind, exc) from None
            raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        _mark_used(entry)
    return entry


def _seal(root: Path) -> None:
    """Entries are read-only: a tool that opens one for writing fails instead of damaging it.
    (Root ignores modes; publishing copies, so nothing outside the cache shares an entry's files.)
    Execute bits stay: root cannot run a file with none (node_modules/.bin/rollup in the npm entry)."""
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            path.chmod(READ_ONLY | (path.stat().st_mode & EXECUTABLE))


def _unseal(root: Path) -> None:
    for path in root.rglob("*"):
        if path.is_file():
            path.chmod(path.stat().st_mode | stat.S_IWUSR)


_FICLONE = 0x40049409  # linux/fs.h: share extents copy-on-write (btrfs, xfs); ext4 says EOPNOTSUPP


def copy_file(src: Path, dst: Path) -> None:
    """A private copy of src at dst: a reflink where the filesystem has them, else an in-kernel copy.
    Never a hard link: a published file must share no writable storage with the cache."""
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        try:
            fcntl.ioctl(fout.fileno(), _FICLONE, fin.fileno())
            return
        except OSError:
            pass
    shutil.copyfile(src, dst)  # sendfile(2) on Linux


def publish(entry: Path, out: Path, digests: dict[str, str] | None = None) -> None:
    """Copy a verified folder to out, replacing what was there only once the copy is whole.

    `digests` (name -> sha256 hex, known for the entry) are remembered for the copies, so the
    next check of out costs a stat per file instead of reading it all again.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        for src in sorted(entry.rglob("*")):
            dst = staging / src.relative_to(entry)
            if src.is_dir():
                dst.mkdir(parents=True, exist_ok=True)
                continue
            dst.parent.mkdir(parents=True, exist_ok=True)
            copy_file(src, dst)
        staging.chmod(0o755)
        old = None
        if out.exists():
            old = out.parent / f".{out.name}.old.{os.getpid()}"
            out.rename(old)
        staging.rename(out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        for name, sha256 in (digests or {}).items():  # after the copy: fewer are racily new
            if (out / name).is_file():
                remember(out / name, bytes.fromhex(sha256))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
