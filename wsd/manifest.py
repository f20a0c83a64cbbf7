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


def file_names(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and p.name != NAME)


def file_table(root: Path) -> dict[str, dict]:
    return {name: digest_file(root / name) for name in file_names(root)}


def write(root: Path, body: dict) -> dict:
    manifest = {"format": FORMAT, **body, "files": file_table(root)}
    (root / NAME).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return manifest


def resign(root: Path, **changes) -> dict:
    """Re-write a folder's manifest over its files as they are now (weights made on another
    machine, a fault injected on purpose), keeping its body; `changes` update the body."""
    body = {k: v for k, v in load(root).items() if k not in ("files", "format")}
    return write(root, {**body, **changes})


def load(root: Path) -> dict:
    path = Path(root) / NAME
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise WsdError(f"{path}: no manifest; is {root} a `wsd build` output folder?") from None
    except ValueError as exc:
        raise WsdError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise WsdError(f"{path}: manifest format {found!r}, this wsd reads {FORMAT}")
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise WsdError(f"{path}: key 'files' must list the built files (found {type(files).__name__})")
    for name, record in files.items():
        if not (
            isinstance(record, dict)
            and isinstance(record.get("sha256"), str)
            and isinstance(record.get("size"), int)
            and not name.startswith("/")
            and ".." not in name.split("/")
        ):
            raise WsdError(f"{path}: files[{name!r}] must be {{sha256, size}} under the folder (found {record!r})")
    return manifest


def require_whole(root: Path, what: str = "model") -> dict:
    """The manifest of a built folder, after checking every file (a stat each when unchanged since
    last hashed); a damaged folder is a WsdError that names the files and the fix."""
    problems = verify(root)
    if problems:
        listed = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise WsdError(
            f"{root}: this built {what} is damaged ({listed}). Rebuild it with `wsd build` "
            "(the build cache is separate and intact), or delete the folder."
        )
    return load(root)


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
    for name in file_names(root):
        if name not in listed:
            problems.append(f"{name}: not in the manifest")
    return problems
