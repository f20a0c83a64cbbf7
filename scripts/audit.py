"""The dependency audit of the lint tier: every locked Python package (constraints/locks/) against
the OSV advisories kept in constraints/advisories/, and `npm audit` over each npm install the
project makes (web/, Dawn for Node, the web runtime kit's bundler). A finding fails the audit
unless constraints/audit-ignore.toml lists it with a reason and an expiry date; an entry past its
date fails too. A source that cannot be reached is printed as NOT AUDITED (with --strict, or
WSD_AUDIT_STRICT=1, it fails the audit).

    python scripts/audit.py [--lock FILE ...] [--npm DIR ...] [--strict]

Written here rather than calling pip-audit: pip-audit's services (PyPI's per-release JSON,
osv.dev) do not answer on this machine kind; the matching below is OSV's own rule (a version is
affected if listed, or inside an ECOSYSTEM range: introduced <= v < fixed, or <= last_affected).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shutil
import subprocess  # nosec B404: npm, never a shell
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

from packaging.version import InvalidVersion, Version

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from wsd.paths import cache_root  # noqa: E402

ADVISORIES = ROOT / "constraints" / "advisories"
IGNORE = ROOT / "constraints" / "audit-ignore.toml"


@dataclass(frozen=True)
class Finding:
    source: str  # the lock or npm folder
    package: str
    version: str
    id: str
    aliases: tuple[str, ...]
    summary: str
    fixed: str = ""

    def names(self) -> set[str]:
        return {self.id, *self.aliases}

    def line(self) -> str:
        fix = f" (fixed in {self.fixed})" if self.fixed else ""
        return f"{self.package} {self.version}: {self.id}{fix}: {self.summary[:110]}"


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked(path: Path) -> dict[str, str]:
    return {
        normalize(n): v for n, v in re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", path.read_text(), re.M)
    }


def _version(text: str) -> Version | None:
    try:
        return Version(text)
    except InvalidVersion:
        return None


def affects(affected: dict, version: str) -> tuple[bool, str]:
    """(whether OSV's `affected` entry covers `version`, the first fixed release it names)."""
    fixed_in = ""
    if version in affected.get("versions", []):
        hit = True
    else:
        hit = False
    v = _version(version)
    for rng in affected.get("ranges", []):
        if rng.get("type") != "ECOSYSTEM":
            continue
        low, inside = None, False
        for event in rng.get("events", []):
            if "introduced" in event:
                low = Version("0") if event["introduced"] == "0" else _version(event["introduced"])
            elif "fixed" in event:
                fixed_in = fixed_in or event["fixed"]
                high = _version(event["fixed"])
                inside = inside or (v is not None and low is not None and high is not None and low <= v < high)
                low = None
            elif "last_affected" in event:
                high = _version(event["last_affected"])
                inside = inside or (v is not None and low is not None and high is not None and low <= v <= high)
                low = None
        if low is not None and v is not None and low <= v:  # introduced and never fixed
            inside = True
        hit = hit or inside
    return hit, fixed_in


def python_findings(lock: Path, advisories: Path = ADVISORIES) -> list[Finding]:
    out = []
    for package, version in sorted(locked(lock).items()):
        for record_path in sorted((advisories / "pypi" / package).glob("*.json")):
            record = json.loads(record_path.read_text())
            if record.get("withdrawn"):
                continue
            for affected in record.get("affected", []):
                if normalize(affected.get("package", {}).get("name", "")) != package:
                    continue
                hit, fixed = affects(affected, version)
                if hit:
                    summary = record.get("summary") or (record.get("details") or "").split("\n")[0]
                    out.append(
                        Finding(
                            lock.name, package, version, record["id"], tuple(record.get("aliases", [])), summary, fixed
                        )
                    )
                    break
    return out


def npm_findings(folder: Path) -> tuple[list[Finding], str | None]:
    """`npm audit` of an install; (findings, why it could not be audited or None)."""
    npm = shutil.which("npm")
    if npm is None:
        return [], "npm is not installed"
    if not (folder / "package-lock.json").is_file():
        return [], f"{folder} has no package-lock.json"
    proc = subprocess.run(  # nosec B603
        [npm, "audit", "--json", "--package-lock-only"], cwd=folder, capture_output=True, text=True, timeout=120
    )
    try:
        body = json.loads(proc.stdout or "{}")
    except json.JSONDecodeError:
        return [], f"npm audit printed no JSON (exit {proc.returncode})"
    if "vulnerabilities" not in body:
        said = [line for line in proc.stderr.splitlines() if "audit" in line] or proc.stderr.splitlines()[:1]
        return [], f"npm audit could not ask the registry ({'; '.join(said) or f'exit {proc.returncode}'})"
    out = []
    for name, vuln in sorted(body.get("vulnerabilities", {}).items()):
        for via in vuln.get("via", []):
            if isinstance(via, dict):
                ident = str(via.get("url", "")).rsplit("/", 1)[-1] or str(via.get("source"))
                out.append(Finding(folder.name, name, vuln.get("range", ""), ident, (), via.get("title", "")))
    return out, None


def npm_folders() -> list[Path]:
    """web/ and the npm installs the project keeps in its cache (Dawn for Node, the kit's bundler)."""
    cache = cache_root()
    folders = [ROOT / "web"]
    for kind in ("dawn", "npm"):
        folders += sorted(p for p in (cache / kind).glob("*") if (p / "package-lock.json").is_file())
    return folders


def load_ignores(path: Path = IGNORE) -> list[dict]:
    entries = tomllib.loads(path.read_text()).get("ignore", []) if path.is_file() else []
    for i, entry in enumerate(entries):
        missing = [k for k in ("id", "package", "reason", "expires") if k not in entry]
        if missing:
            raise SystemExit(f"{path.name}: entry {i + 1} lacks {', '.join(missing)}")
    return entries


def judge(findings: list[Finding], ignores: list[dict], today: datetime.date) -> tuple[list[str], list[str]]:
    """(lines that fail the audit, lines that are accepted)."""
    failing, accepted = [], []
    for f in findings:
        entry = next((e for e in ignores if e["id"] in f.names() and normalize(e["package"]) == f.package), None)
        if entry is None:
            failing.append(f"[{f.source}] {f.line()}")
        elif entry["expires"] < today:
            failing.append(f"[{f.source}] {f.line()} (accepted until {entry['expires']}: expired; {entry['reason']})")
        else:
            accepted.append(f"[{f.source}] {f.line()} (accepted until {entry['expires']}: {entry['reason']})")
    return failing, accepted


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lock", action="append", type=Path, help="a hash-pinned lock (default: constraints/locks/*)")
    ap.add_argument("--npm", action="append", type=Path, help="an npm install to audit (default: web/ and the caches)")
    ap.add_argument("--no-npm", action="store_true", help="the Python locks only")
    ap.add_argument("--ignore", type=Path, default=IGNORE)
    ap.add_argument("--strict", action="store_true", default=os.environ.get("WSD_AUDIT_STRICT") == "1")
    args = ap.parse_args(argv)
    snapshot = json.loads((ADVISORIES / "SNAPSHOT.json").read_text())
    findings, unaudited = [], []
    locks = args.lock or sorted((ROOT / "constraints" / "locks").glob("*.txt"))
    for lock in locks:
        found = python_findings(lock)
        findings += found
        print(f"audit: {lock.name}: {len(locked(lock))} packages, {len(found)} advisories match")
    print(f"  (OSV advisories from {snapshot['source']} at {snapshot['commit'][:10]}, {snapshot['date']})")
    for folder in [] if args.no_npm else args.npm or npm_folders():
        found, why = npm_findings(folder)
        if why:
            unaudited.append(f"{folder}: {why}")
        else:
            findings += found
            print(f"audit: npm {folder}: {len(found)} advisories")
    failing, accepted = judge(findings, load_ignores(args.ignore), datetime.date.today())
    for line in accepted:
        print(f"  accepted: {line}")
    for line in unaudited:
        print(f"  NOT AUDITED: {line}")
    for line in failing:
        print(f"  FAIL: {line}")
    if failing:
        print(
            f"audit: {len(failing)} finding(s); fix the pin, or list it in {args.ignore.name} with a reason and expiry"
        )
    return 1 if failing or (args.strict and unaudited) else 0


if __name__ == "__main__":
    sys.exit(main())
