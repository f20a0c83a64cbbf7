"""Refresh the hash-pinned locks: one per stack, every package the project's envs install (the
project's dependencies with its test and lint extras, under that stack's pins), each with the
sha256 of every file PyPI has for its release. tox hands a lock to uv as its constraints file, and
uv refuses a download whose hash is not in it.

    python scripts/lock.py                 # every stack
    python scripts/lock.py py313-torch27   # one

Stacks are the pin files in constraints/ (the human-edited input); the locks go to
constraints/locks/. uv comes from scripts/tox's tools folder (or PATH).
"""

from __future__ import annotations

import re
import subprocess  # nosec B404: uv, never a shell
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PINS = ROOT / "constraints"
LOCKS = PINS / "locks"
sys.path.insert(0, str(ROOT))
from wsd.paths import uv_path  # noqa: E402

EXTRAS = ("test", "lint")


def uv() -> str:
    return uv_path() or sys.exit(
        "scripts/lock.py: uv not found; run scripts/tox once (it installs uv) or pip install uv"
    )


def python_of(stack: str) -> str:
    """py313-torch27 -> 3.13"""
    found = re.match(r"py(\d)(\d+)-", stack)
    if not found:
        sys.exit(f"scripts/lock.py: {stack}: a stack is named pyXY-..., e.g. py313-torch27")
    return f"{found.group(1)}.{found.group(2)}"


def lock(stack: str) -> Path:
    pins = PINS / f"{stack}.txt"
    out = LOCKS / f"{stack}.txt"
    argv = [uv(), "pip", "compile", str(ROOT / "pyproject.toml"), "--constraint", str(pins)]
    argv += [a for extra in EXTRAS for a in ("--extra", extra)]
    argv += ["--generate-hashes", "--python-version", python_of(stack), "--python-platform", "x86_64-manylinux_2_28"]
    argv += ["--no-header", "--quiet", "--output-file", str(out)]
    subprocess.run(argv, check=True, cwd=ROOT)  # nosec B603
    body = out.read_text()
    head = f"# The hash-pinned lock of constraints/{stack}.txt: refresh with `python scripts/lock.py {stack}`.\n"
    out.write_text(head + body)
    return out


def main(argv: list[str]) -> int:
    stacks = argv or sorted(p.stem for p in PINS.glob("*.txt"))
    LOCKS.mkdir(exist_ok=True)
    for stack in stacks:
        print(f"locking {stack} ...", flush=True)
        path = lock(stack)
        count = sum(1 for line in path.read_text().splitlines() if re.match(r"^[A-Za-z0-9]", line))
        print(f"  {path.relative_to(ROOT)}: {count} packages")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
