"""Running external tools with output captured and failures made readable."""

from __future__ import annotations

# wsd drives compilers and browsers by design.
import subprocess  # nosec B404
from collections.abc import Sequence
from pathlib import Path

from wsd.errors import BuildError


def run(cmd: Sequence[str | Path], cwd: Path | None = None, what: str = "", env=None) -> str:
    """Run a command (never through a shell); raise BuildError with its output on failure."""
    argv = [str(c) for c in cmd]
    # An argv list, never a shell.
    proc = subprocess.run(  # nosec B603
        argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, check=False
    )
    if proc.returncode != 0:
        tail = "\n".join(proc.stdout.splitlines()[-40:])
        raise BuildError(f"{what or argv[0]} failed (exit {proc.returncode}): {' '.join(argv[:6])} ...\n{tail}")
    return proc.stdout


def version_of(cmd: Sequence[str], timeout: float = 20.0) -> str | None:
    """First line of `cmd` output (a --version call), or None if it cannot run."""
    try:
        proc = subprocess.run(  # nosec B603
            list(cmd), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    return lines[0].strip() if proc.returncode == 0 and lines else None
