"""`wsd-conformance bisect --tvm A..B`: which release broke which stage.

The releases between A and B come from the package index; each gets its own environment
(uv, from its cache: seconds), made from the baseline constraints with that one package
pinned (and its companion pins, e.g. tvm-ffi for TVM 0.25), and runs the real gate there:
the web runtime kit and the builds are cached per version by their keys. A stage's verdict
per release gives, for each stage, the last good and the first bad release. Up to
LINEAR_MAX releases are all run, so a good -> bad -> good history is reported whole; more
are binary-searched per stage between the ends. A failure whose message is reference drift
is told apart (the reference moved: torch/diffusers) from a candidate that broke (the
compiled result moved: TVM).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from wsd.errors import WsdError
from wsd.paths import cache_root, repo_root

PACKAGES = {"tvm": "apache-tvm", "torch": "torch", "diffusers": "diffusers", "transformers": "transformers"}
# Pins a release needs beside it: TVM 0.25's sources do not build against tvm-ffi >= 0.1.13.
COMPANIONS = {("apache-tvm", "0.25"): {"apache-tvm-ffi": "0.1.12"}}
LINEAR_MAX = 8
BASELINE = repo_root() / "constraints" / "py313-torch27.txt"

Verdicts = dict[str, tuple[str, str]]  # stage -> (status, message)


@dataclass
class StageResult:
    stage: str
    history: list[tuple[str, str]] = field(default_factory=list)  # (version, status) in release order
    last_good: str | None = None
    first_bad: str | None = None
    message: str = ""
    kind: str = ""  # "candidate broke" | "reference moved" | "" (no change)

    def as_json(self) -> dict:
        return {
            "stage": self.stage,
            "last_good": self.last_good,
            "first_bad": self.first_bad,
            "kind": self.kind,
            "message": self.message,
            "history": [{"version": v, "status": s} for v, s in self.history],
        }


def parse_range(text: str) -> tuple[str, str]:
    good, sep, bad = text.partition("..")
    if not sep or not good or not bad:
        raise WsdError(f"{text!r}: give a range as GOOD..BAD (e.g. 0.25.0.post1..0.27.0.post1)")
    return good, bad


def index_versions(package: str) -> list[str]:
    """Every release of a package on PyPI (no pre-releases), oldest first."""
    from packaging.version import InvalidVersion, Version

    url = f"https://pypi.org/pypi/{package}/json"
    try:
        with urllib.request.urlopen(url, timeout=60) as resp:  # noqa: S310 (a fixed https URL)
            releases = json.loads(resp.read())["releases"]
    except OSError as exc:
        raise WsdError(f"cannot list {package}'s releases from PyPI ({exc})") from None
    out = []
    for name, files in releases.items():
        try:
            version = Version(name)
        except InvalidVersion:
            continue
        if files and not version.is_prerelease and not all(f.get("yanked") for f in files):
            out.append(name)
    return sorted(out, key=Version)


def between(versions: list[str], good: str, bad: str) -> list[str]:
    from packaging.version import Version

    lo, hi = Version(good), Version(bad)
    if lo >= hi:
        raise WsdError(f"{good}..{bad}: the good version must be older than the bad one")
    chosen = [v for v in versions if lo <= Version(v) <= hi]
    for end in (good, bad):
        if end not in chosen:
            raise WsdError(f"{end} is not a release on the index (releases: {', '.join(versions[-12:])})")
    return chosen


def constraints_for(package: str, version: str, base: Path = BASELINE) -> str:
    """The baseline constraints with `package` (and its companions) pinned to this release."""
    pins = {package: version}
    for (name, prefix), extra in COMPANIONS.items():
        if name == package and (version == prefix or version.startswith(prefix + ".")):
            pins.update(extra)
    lines = []
    for line in base.read_text().splitlines():
        name = re.split(r"[=<>!~ ]", line.strip(), maxsplit=1)[0].lower()
        if name and name in pins:
            continue
        lines.append(line)
    lines += [f"{name}=={v}" for name, v in pins.items()]
    return "\n".join(lines) + "\n"


def find_uv() -> str:
    for cand in (shutil.which("uv"), str(cache_root() / "tools" / "bin" / "uv")):
        if cand and Path(cand).is_file():
            return cand
    raise WsdError("bisect needs uv: run `scripts/tox --version` once (it installs uv), or `pip install uv`")


def make_env(package: str, version: str, echo=print) -> Path:
    """An environment with the baseline stack and `package==version`, made by uv (cached)."""
    constraints = constraints_for(package, version)
    key = f"{package}-{version}-{hashlib.sha256(constraints.encode()).hexdigest()[:10]}"
    env = cache_root() / "bisect" / "envs" / key
    if (env / ".ready").is_file():
        return env
    env.parent.mkdir(parents=True, exist_ok=True)
    (env.parent / f"{key}.txt").write_text(constraints)
    uv = find_uv()
    echo(f"[bisect] environment for {package}=={version}")
    subprocess.run([uv, "venv", "-q", "--allow-existing", "-p", sys.executable, str(env)], check=True)
    py = str(env / "bin" / "python")
    argv = [uv, "pip", "install", "-q", "-p", py, "-c", str(env.parent / f"{key}.txt"), "-e", f"{repo_root()}[test]"]
    subprocess.run([*argv, f"{package}=={version}"], check=True)
    (env / ".ready").write_text(time.strftime("%Y-%m-%d %H:%M:%S"))
    return env


def gate_in(env: Path, out: Path, gate_args: list[str]) -> Verdicts:
    """Run the gate with the environment's Python; per stage and backend, (status, message)."""
    out.mkdir(parents=True, exist_ok=True)
    argv = [
        str(env / "bin" / "python"),
        "-m",
        "pytest",
        "-m",
        "conformance",
        str(repo_root() / "tests" / "conformance"),
    ]
    argv += ["-p", "no:cacheprovider", "-q", "--report-dir", str(out), *gate_args]
    with open(out / "gate.log", "w") as log:
        subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, cwd=repo_root(), env={**os.environ}, check=False)
    summary = out / "summary.json"
    if not summary.is_file():
        return {"*": ("error", f"the gate did not run; see {out / 'gate.log'}")}
    rows = json.loads(summary.read_text())["stages"]
    return {f"{r['stage']} [{r['backend']}]": (r["status"], r.get("message") or "") for r in rows}


def kind_of(message: str) -> str:
    return "reference moved" if "reference drift" in message else "candidate broke"


def search(versions: list[str], evaluate: Callable[[str], Verdicts], echo=print) -> list[StageResult]:
    """Per stage: last good and first bad release. `evaluate(version)` runs the gate there."""
    memo: dict[str, Verdicts] = {}

    def at(v: str) -> Verdicts:
        if v not in memo:
            echo(f"[bisect] gate on {v}")
            memo[v] = evaluate(v)
        return memo[v]

    def ok(v: str, stage: str) -> bool:
        return at(v).get(stage, at(v).get("*", ("error", "")))[0] == "pass"

    order = versions if len(versions) <= LINEAR_MAX else [versions[0], versions[-1]]
    for v in order:
        at(v)
    stages = sorted({s for v in memo for s in memo[v] if s != "*"})
    results = []
    for stage in stages:
        res = StageResult(stage)
        if len(versions) <= LINEAR_MAX:  # every release ran: report the first good -> bad step
            res.history = [(v, at(v).get(stage, ("absent", ""))[0]) for v in versions]
            for prev, cur in zip(versions, versions[1:], strict=False):
                if ok(prev, stage) and not ok(cur, stage):
                    res.last_good, res.first_bad = prev, cur
                    break
        elif ok(versions[0], stage) and not ok(versions[-1], stage):
            lo, hi = 0, len(versions) - 1  # invariant: good at lo, bad at hi
            while hi - lo > 1:
                mid = (lo + hi) // 2
                lo, hi = (mid, hi) if ok(versions[mid], stage) else (lo, mid)
            res.last_good, res.first_bad = versions[lo], versions[hi]
            res.history = [(v, memo[v].get(stage, ("absent", ""))[0]) for v in versions if v in memo]
        if res.first_bad:
            res.message = at(res.first_bad).get(stage, at(res.first_bad).get("*", ("", "")))[1]
            res.kind = kind_of(res.message)
        results.append(res)
    return results


def table(package: str, results: list[StageResult]) -> str:
    lines = [f"{'stage':<34} {'last good':<14} {'first bad':<14} kind / message"]
    for r in results:
        history = " ".join(f"{v}:{s}" for v, s in r.history)
        if r.first_bad:
            lines.append(f"{r.stage:<34} {r.last_good:<14} {r.first_bad:<14} {r.kind}: {r.message[:100]}")
        else:
            lines.append(f"{r.stage:<34} {'-':<14} {'-':<14} no good -> bad step")
        lines.append(f"{'':<34} {history}")
    return f"bisect of {package}\n" + "\n".join(lines)


def run(spec: dict[str, str], gate_args: list[str], out: Path, echo=print) -> dict:
    """spec: {"tvm": "A..B"} (one package). Writes out/bisect.json and returns it."""
    if len(spec) != 1:
        raise WsdError("bisect one package at a time: --tvm, --torch, --diffusers or --transformers")
    ((short, text),) = spec.items()
    package = PACKAGES[short]
    good, bad = parse_range(text)
    versions = between(index_versions(package), good, bad)
    echo(f"[bisect] {package}: {', '.join(versions)}")

    def evaluate(version: str) -> Verdicts:
        env = make_env(package, version, echo)
        return gate_in(env, out / version, gate_args)

    results = search(versions, evaluate, echo)
    body = {"package": package, "range": [good, bad], "versions": versions, "stages": [r.as_json() for r in results]}
    out.mkdir(parents=True, exist_ok=True)
    (out / "bisect.json").write_text(json.dumps(body, indent=1) + "\n")
    echo(table(package, results))
    return body
