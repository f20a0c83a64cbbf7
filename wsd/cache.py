"""Content-keyed build cache in the user cache folder.

An entry is a folder named by the key of everything its build depends on, holding the
outputs and a manifest of their sha256. An entry is used only if every file still
hashes as recorded; otherwise it is rebuilt, never trusted.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
import tempfile
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

from wsd.paths import cache_root

MANIFEST = "manifest.json"


def file_digest(path: Path) -> bytes:
    """sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.digest()


def sha256_file(path: Path) -> str:
    return file_digest(path).hex()


def key_of(inputs: dict) -> str:
    """A short stable key for a JSON-able description of a build's inputs."""
    blob = json.dumps(inputs, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:20]


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
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


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
    with _locked(cache_root() / kind / f".{key}.lock"):
        if entry.exists() and not force:
            problems = verify(entry)
            if not problems:
                return entry
            echo(f"{kind} cache entry {key} is corrupt ({'; '.join(problems)}); rebuilding")
        staging = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=entry.parent))
        staging.chmod(0o755)  # mkdtemp makes it private; the cache is meant to be shared
        try:
            names = build(staging)
            manifest = {"key": key, "inputs": inputs, "files": {n: sha256_file(staging / n) for n in names}}
            (staging / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
            if entry.exists():
                shutil.rmtree(entry)
            staging.rename(entry)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return entry
