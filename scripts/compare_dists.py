"""Compare two built dists file by file (sha256) and their manifests key by key: the proof that a
refactor left a build unchanged. Keys that differ every build (timings, validation time) are named
apart from the rest.

    python scripts/compare_dists.py BEFORE/sd15-tiny AFTER/sd15-tiny
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

PER_RUN = {"timings_s", "wgsl.ms"}  # differ between two runs of the same build


def digests(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def flat(value, prefix=""):
    if isinstance(value, dict):
        for k, v in value.items():
            yield from flat(v, f"{prefix}{k}.")
    else:
        yield prefix[:-1], value


def main(before: Path, after: Path) -> int:
    a, b = digests(before), digests(after)
    same = sorted(n for n in a.keys() & b.keys() if a[n] == b[n])
    changed = sorted(n for n in a.keys() & b.keys() if a[n] != b[n])
    print(f"{len(same)} files identical; changed: {changed or 'none'}")
    print(f"only before: {sorted(a.keys() - b.keys()) or 'none'}; only after: {sorted(b.keys() - a.keys()) or 'none'}")
    ma = dict(flat(json.loads((before / "manifest.json").read_text())))
    mb = dict(flat(json.loads((after / "manifest.json").read_text())))
    for key in sorted(ma.keys() | mb.keys()):
        if key.startswith("files.") or (key in ma and key in mb and ma[key] == mb[key]):
            continue
        kind = "per run" if key in PER_RUN else "manifest"
        print(f"  {kind}: {key}: {ma.get(key, '(absent)')!r} -> {mb.get(key, '(absent)')!r}")
    return 1 if [n for n in changed if n != "manifest.json"] or a.keys() != b.keys() else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
