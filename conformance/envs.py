"""Environments for a version set, made by uv from its cache (hard links: seconds, little disk).

The bisect and the matrix both need "the baseline stack with these pins on that Python";
this is the one place that makes such an environment and runs the gate inside it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess  # nosec B404: uv and the env's python, never a shell
import time
from pathlib import Path

from conformance import gate
from wsd.errors import WsdError
from wsd.paths import cache_root, is_checkout, repo_root

BASELINE = repo_root() / "constraints" / "py313-torch27.txt"
# Pins a release needs beside it: TVM 0.25's sources do not build against tvm-ffi >= 0.1.13.
COMPANIONS = {("apache-tvm", "0.25"): {"apache-tvm-ffi": "0.1.12"}}
# Pins of the baseline that only exist for newer Pythons (numpy 2.5 and scikit-image 0.26 need >= 3.12).
NEEDS_PY312 = ("numpy", "scikit-image")

Verdicts = dict[str, tuple[str, str]]  # "stage [backend]" -> (status, message)


def constraints(pins: dict[str, str], python: str = "3.13", base: Path = BASELINE) -> str:
    """The baseline constraints with `pins` (and their companions) replacing the baseline's."""
    pins = dict(pins)
    for package, version in list(pins.items()):
        for (name, prefix), extra in COMPANIONS.items():
            if name == package and (version == prefix or version.startswith(prefix + ".")):
                pins.update(extra)
    drop = set(pins) | (set(NEEDS_PY312) if tuple(map(int, python.split("."))) < (3, 12) else set())
    lines = []
    for line in base.read_text().splitlines():
        name = re.split(r"[=<>!~ ]", line.strip(), maxsplit=1)[0].lower()
        if name and name in drop:
            continue
        lines.append(line)
    lines += [f"{name}=={v}" for name, v in pins.items()]
    return "\n".join(lines) + "\n"


def find_uv() -> str:
    for cand in (shutil.which("uv"), str(cache_root() / "tools" / "bin" / "uv")):
        if cand and Path(cand).is_file():
            return cand
    raise WsdError("this needs uv: run `scripts/tox --version` once (it installs uv), or `pip install uv`")


def find_python(version: str) -> str:
    """A Python of that version that runs (pyenv's shims exist for versions that are not selected)."""
    candidates = [
        *sorted(Path.home().glob(f".pyenv/versions/{version}*/bin/python{version}")),
        shutil.which(f"python{version}"),
    ]
    for cand in candidates:
        if not cand or not Path(cand).is_file():
            continue
        probe = subprocess.run([str(cand), "-c", "import sys"], capture_output=True, check=False)  # nosec B603
        if probe.returncode == 0:
            return str(cand)
    raise WsdError(f"Python {version} is not installed here (pyenv install {version}, or apt)")


def make(pins: dict[str, str], python: str = "3.13", echo=print) -> Path:
    """An environment with the baseline stack and these pins on that Python (cached by content)."""
    if not is_checkout():  # the env installs this source tree with other releases beside it
        raise WsdError("bisect and matrix build environments from a wsd checkout: run them in a clone of wsd")
    text = constraints(pins, python)
    key = hashlib.sha256(f"{python}\n{text}".encode()).hexdigest()[:12]
    label = "-".join(f"{k}{v}" for k, v in sorted(pins.items()))
    env = cache_root() / "version-envs" / f"py{python}-{label}-{key}"
    if (env / ".ready").is_file():
        return env
    env.parent.mkdir(parents=True, exist_ok=True)
    cfile = env.parent / f"{env.name}.txt"
    cfile.write_text(text)
    uv = find_uv()
    echo(f"[envs] py{python} {label}")
    subprocess.run([uv, "venv", "-q", "--allow-existing", "-p", find_python(python), str(env)], check=True)  # nosec B603
    py = str(env / "bin" / "python")
    reqs = [f"{k}=={v}" for k, v in pins.items()]
    subprocess.run(  # nosec B603
        [uv, "pip", "install", "-q", "-p", py, "-c", str(cfile), "-e", f"{repo_root()}[test]", *reqs], check=True
    )
    (env / ".ready").write_text(time.strftime("%Y-%m-%d %H:%M:%S"))
    return env


def gate_in(env: Path, out: Path, gate_args: list[str]) -> Verdicts:
    """The gate run with the environment's Python; per stage and backend, (status, message)."""
    out.mkdir(parents=True, exist_ok=True)
    argv = [
        str(env / "bin" / "python"),
        "-m",
        "pytest",
        *gate.pytest_args(),
    ]
    argv += ["-p", "no:cacheprovider", "-q", "--report-dir", str(out), *gate_args]
    with open(out / "gate.log", "w") as log:
        subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, cwd=repo_root(), env={**os.environ}, check=False)  # nosec B603
    return verdicts(out / "summary.json", out / "gate.log")


def verdicts(summary: Path, log: Path | None = None) -> Verdicts:
    if not summary.is_file():
        return {"*": ("error", f"the gate did not run; see {log or summary.parent}")}
    rows = json.loads(summary.read_text())["stages"]

    # keyed by model too: the gate runs several models, and one's row must not hide another's
    def key(r):
        return f"{r['model'] + '/' if r.get('model') else ''}{r['stage']} [{r['backend']}]"

    return {key(r): (r["status"], r.get("message") or "") for r in rows}
