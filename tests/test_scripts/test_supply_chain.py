"""The supply-chain checks: the dependency audit (scripts/audit.py) fails on a vulnerable pin and
honours only unexpired acceptances; the hash-pinned locks (scripts/lock.py) cover their pins and
make uv refuse a file whose hash changed."""

from __future__ import annotations

import datetime
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from wsd.paths import uv_path

ROOT = Path(__file__).resolve().parents[2]
STACKS = sorted(p.stem for p in (ROOT / "constraints").glob("*.txt"))


def script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


audit = script("audit")


def scratch_lock(tmp_path, *pins: str) -> Path:
    path = tmp_path / "scratch.txt"
    path.write_text("".join(f"{pin} \\\n    --hash=sha256:{'0' * 64}\n" for pin in pins))
    return path


def run_audit(tmp_path, lock: Path, ignore: str = "") -> tuple[int, str]:
    (tmp_path / "ignore.toml").write_text(ignore)
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "audit.py"),
            "--lock",
            str(lock),
            "--no-npm",
            "--ignore",
            str(tmp_path / "ignore.toml"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    return proc.returncode, proc.stdout + proc.stderr


def test_an_injected_vulnerable_pin_fails_the_audit(tmp_path):
    code, out = run_audit(tmp_path, scratch_lock(tmp_path, "requests==2.19.0", "tqdm==4.70.1"))
    assert code == 1, out
    assert "FAIL: [scratch.txt] requests 2.19.0: PYSEC-2018-28 (fixed in 2.20.0)" in out
    assert "tqdm" not in out.split("FAIL")[1]  # a release past its advisories is clean


def test_an_accepted_advisory_passes_until_it_expires(tmp_path):
    lock = scratch_lock(tmp_path, "requests==2.30.0")  # PYSEC-2023-74: fixed in 2.31.0
    code, out = run_audit(tmp_path, lock)
    ids = re.findall(r"requests 2\.30\.0: ([A-Z]+-[0-9A-Za-z-]+)", out)
    assert code == 1 and ids, out
    later = (datetime.date.today() + datetime.timedelta(days=30)).isoformat()
    entries = "".join(
        f'[[ignore]]\nid = "{i}"\npackage = "requests"\nreason = "test"\nexpires = {later}\n' for i in ids
    )
    code, out = run_audit(tmp_path, lock, entries)
    assert code == 0 and "accepted: [scratch.txt] requests 2.30.0" in out, out
    code, out = run_audit(tmp_path, lock, entries.replace(later, "2020-01-01"))
    assert code == 1 and "expired" in out, out


def test_the_projects_own_locks_pass_or_list_their_advisories(tmp_path):
    for lock in sorted((ROOT / "constraints" / "locks").glob("*.txt")):
        code, out = run_audit(tmp_path, lock, (ROOT / "constraints" / "audit-ignore.toml").read_text())
        assert code == 0, out


@pytest.mark.parametrize(
    ("affected", "version", "hit"),
    [
        ({"ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "2.0"}]}]}, "1.9", True),
        ({"ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "2.0"}]}]}, "2.0", False),
        ({"ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "1.0"}, {"last_affected": "1.5"}]}]}, "1.5", True),
        ({"ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "1.0"}]}]}, "9.0", True),  # never fixed
        ({"ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "1.0"}]}]}, "0.9", False),
        ({"versions": ["0.5"]}, "0.5", True),
        ({"ranges": [{"type": "GIT", "events": [{"introduced": "0"}]}]}, "1.0", False),  # git ranges: not versions
    ],
)
def test_osv_ranges_are_read_as_osv_defines_them(affected, version, hit):
    assert audit.affects(affected, version)[0] is hit


@pytest.mark.parametrize("stack", STACKS)
def test_each_lock_holds_its_stacks_pins_with_hashes(stack):
    pins = dict(
        re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", (ROOT / "constraints" / f"{stack}.txt").read_text(), re.M)
    )
    text = (ROOT / "constraints" / "locks" / f"{stack}.txt").read_text()
    locked = audit.locked(ROOT / "constraints" / "locks" / f"{stack}.txt")
    stale = {n: (v, locked.get(audit.normalize(n))) for n, v in pins.items() if locked.get(audit.normalize(n)) != v}
    assert stale == {}, f"refresh the lock: python scripts/lock.py {stack}"
    entries = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 1)[1])
    assert all("--hash=sha256:" in entry for entry in entries if "==" in entry)


def uv() -> str:
    path = uv_path()
    assert path, "uv is installed by scripts/tox"
    return path


def test_a_changed_hash_in_the_lock_stops_the_install(tmp_path):
    """The lock as tox gives it to uv (UV_CONSTRAINT), with one file's sha256 changed."""
    lock = (ROOT / "constraints" / "locks" / "py313-torch27.txt").read_text()
    block = re.search(r"^tqdm==\S+ \\\n(    --hash=sha256:[0-9a-f]{64}.*\n)+", lock, re.M).group(0)
    tampered = tmp_path / "lock.txt"
    tampered.write_text(re.sub(r"sha256:[0-9a-f]{64}", "sha256:" + "1" * 64, block))
    env = {**os.environ, "VIRTUAL_ENV": str(tmp_path / "venv"), "UV_CONSTRAINT": str(tampered)}
    subprocess.run([uv(), "venv", "-q", "-p", sys.executable, str(tmp_path / "venv")], check=True, env=env)
    proc = subprocess.run([uv(), "pip", "install", "tqdm"], capture_output=True, text=True, env=env)
    assert proc.returncode != 0
    assert "Hash mismatch" in proc.stderr and "tqdm" in proc.stderr, proc.stderr
    (tmp_path / "good.txt").write_text(block)
    env["UV_CONSTRAINT"] = str(tmp_path / "good.txt")
    assert subprocess.run([uv(), "pip", "install", "-q", "tqdm"], env=env).returncode == 0
