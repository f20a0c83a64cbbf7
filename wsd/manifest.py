"""dist/<model>/manifest.json: what was built, from what, and every file's digest.

The page fetches each file with the SRI string recorded here, so a tampered or
truncated shard is refused before it is used; `wsd verify` checks the same on disk.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

from wsd.cache import file_digest
from wsd.errors import WsdError

NAME = "manifest.json"
FORMAT = 1


def digest_file(path: Path) -> dict:
    raw = file_digest(path)
    return {"sha256": raw.hex(), "size": path.stat().st_size, "integrity": "sha256-" + base64.b64encode(raw).decode()}


def file_table(root: Path) -> dict[str, dict]:
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.name != NAME)
    return {p.relative_to(root).as_posix(): digest_file(p) for p in files}


def write(root: Path, body: dict) -> dict:
    manifest = {"format": FORMAT, **body, "files": file_table(root)}
    (root / NAME).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return manifest


def load(root: Path) -> dict:
    path = Path(root) / NAME
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise WsdError(f"{path}: no manifest; is {root} a `wsd build` output folder?") from None
    except ValueError as exc:
        raise WsdError(f"{path}: not valid JSON ({exc})") from None
    if manifest.get("format") != FORMAT:
        raise WsdError(f"{path}: manifest format {manifest.get('format')!r}, this wsd reads {FORMAT}")
    return manifest


def verify(root: Path) -> list[str]:
    """Problems with a built folder: missing, altered or unlisted files (empty when whole)."""
    root = Path(root)
    manifest = load(root)
    problems = []
    for name, expected in manifest["files"].items():
        path = root / name
        if not path.is_file():
            problems.append(f"{name}: missing")
            continue
        found = digest_file(path)
        if found["size"] != expected["size"]:
            problems.append(f"{name}: size {found['size']}, manifest says {expected['size']}")
        elif found["sha256"] != expected["sha256"]:
            problems.append(f"{name}: sha256 differs from the manifest (altered)")
    listed = set(manifest["files"])
    for name in file_table(root):
        if name not in listed:
            problems.append(f"{name}: not in the manifest")
    return problems
