"""Refresh constraints/advisories/: the OSV advisories (PyPA's advisory database) for every package
in constraints/locks/, which `scripts/audit.py` reads offline.

Why a snapshot: this machine kind reaches PyPI's file index but not its per-release JSON (404)
nor osv.dev, so pip-audit's services cannot answer here; the same OSV records, kept beside the
locks, can. The snapshot says its source commit and date; refresh it where GitHub is reachable:

    git clone --depth 1 https://github.com/pypa/advisory-database /tmp/adb
    python scripts/advisories.py /tmp/adb
"""

from __future__ import annotations

import json
import shutil
import subprocess  # nosec B404: git, never a shell
import sys
from pathlib import Path

import yaml
from audit import locked, normalize  # this script's sibling: one reading of a lock

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "constraints" / "advisories"
KEEP = ("id", "aliases", "summary", "details", "affected", "published", "modified", "withdrawn")


def locked_packages() -> set[str]:
    return {name for lock in (ROOT / "constraints" / "locks").glob("*.txt") for name in locked(lock)}


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout  # nosec


def main(repo: Path) -> int:
    wanted = locked_packages()
    commit, date = git(repo, "log", "-1", "--format=%H %cs").split()
    files = [f for f in git(repo, "ls-tree", "-r", "--name-only", "HEAD", "vulns").splitlines() if f.endswith(".yaml")]
    if OUT.exists():
        shutil.rmtree(OUT)
    kept = 0
    for path in files:
        package = normalize(path.split("/")[1])
        if package not in wanted:
            continue
        record = yaml.safe_load(git(repo, "show", f"HEAD:{path}"))
        record = {k: v for k, v in record.items() if k in KEEP}
        dest = OUT / "pypi" / package / f"{record['id']}.json"
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(json.dumps(record, indent=1, sort_keys=True, default=str) + "\n")
        kept += 1
    stamp = {"source": "https://github.com/pypa/advisory-database", "commit": commit, "date": date, "advisories": kept}
    (OUT / "SNAPSHOT.json").write_text(json.dumps(stamp, indent=1) + "\n")
    print(f"{kept} advisories for {len(wanted)} locked packages, from {commit[:10]} ({date})")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    sys.exit(main(Path(sys.argv[1])))
