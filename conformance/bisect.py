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

import json
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from conformance import envs, expectations
from wsd.errors import WsdError

PACKAGES = {"tvm": "apache-tvm", "torch": "torch", "diffusers": "diffusers", "transformers": "transformers"}
LINEAR_MAX = 8


@dataclass
class StageResult:
    stage: str
    history: list[tuple[str, str]] = field(default_factory=list)  # (version, status) in release order
    last_good: str | None = None
    first_bad: str | None = None
    message: str = ""
    # "candidate broke" | "reference moved" | "got slower" (--perf) | "expected" (expectations.toml) | ""
    kind: str = ""
    because: str = ""  # for an expected failure: its reason

    def as_json(self) -> dict:
        return {
            "stage": self.stage,
            "last_good": self.last_good,
            "first_bad": self.first_bad,
            "kind": self.kind,
            "message": self.message,
            "because": self.because,
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
        with urllib.request.urlopen(url, timeout=60) as resp:  # noqa: S310  # nosec B310 (a fixed https URL)
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


def constraints_for(package: str, version: str) -> str:
    return envs.constraints({package: version})


def kind_of(message: str) -> str:
    if message.startswith("perf: "):  # the perf gate's failure (conformance/perf.py): right, but slower
        return "got slower"
    return "reference moved" if "reference drift" in message else "candidate broke"


def perf_evaluate(versions: list[str], evaluate_with: Callable[[str, list[str]], envs.Verdicts], baseline: Path):
    """`bisect --perf`: the good end runs the gate with --perf and its times become the baseline
    every other release is judged against (search evaluates the good end first)."""
    from conformance import perf

    def evaluate(version: str) -> envs.Verdicts:
        if version == versions[0]:
            verdicts, summary = evaluate_with(version, ["--perf"])
            try:
                perf.record(json.loads(summary.read_text()), baseline)
            except (OSError, ValueError, perf.PerfError) as exc:
                raise WsdError(f"bisect --perf: the good end {version} gave no times to judge by ({exc})") from None
            return verdicts
        if not baseline.is_file():
            raise WsdError(f"bisect --perf: the good end {versions[0]} made no perf baseline ({baseline})")
        return evaluate_with(version, ["--perf", "--perf-baseline", str(baseline)])[0]

    return evaluate


def search(
    versions: list[str], evaluate: Callable[[str], envs.Verdicts], echo=print, package: str = "", known=None
) -> list[StageResult]:
    """Per stage: last good and first bad release. `evaluate(version)` runs the gate there. A
    first bad release whose failure expectations.toml lists for `package` is marked expected."""
    memo: dict[str, envs.Verdicts] = {}

    def at(v: str) -> envs.Verdicts:
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
            status, res.message = at(res.first_bad).get(stage, at(res.first_bad).get("*", ("", "")))
            res.kind = kind_of(res.message)
            because = expectations.why_expected(stage, status, {package: res.first_bad}, known)
            if because:
                res.kind, res.because = "expected", because
        results.append(res)
    return results


def table(package: str, results: list[StageResult]) -> str:
    """Stages with a good -> bad step first, then those bad throughout, then the always good."""
    width = max([34, *(len(r.stage) + 1 for r in results)])
    lines = [f"{'stage':<{width}} {'last good':<14} {'first bad':<14} kind / message"]

    def rank(r):
        return 0 if r.first_bad else 2 if all(s == "pass" for _, s in r.history) else 1

    for r in sorted(results, key=rank):
        history = " ".join(f"{v}:{s}" for v, s in r.history)
        if r.first_bad:
            why = r.because if r.kind == "expected" else r.message
            lines.append(f"{r.stage:<{width}} {r.last_good:<14} {r.first_bad:<14} {r.kind}: {why[:100]}")
        elif rank(r) == 2:
            lines.append(f"{r.stage:<{width}} {'-':<14} {'-':<14} good in every release")
            continue  # its history says nothing more
        else:
            lines.append(f"{r.stage:<{width}} {'-':<14} {'-':<14} no good -> bad step (bad from the first release?)")
        lines.append(f"{'':<{width}} {history}")
    return f"bisect of {package}\n" + "\n".join(lines)


def run(
    spec: dict[str, str], gate_args: list[str], out: Path, echo=print, resume: bool = False, perf: bool = False
) -> dict:
    """spec: {"tvm": "A..B"} (one package). Writes out/bisect.json and returns it. With `resume`, a
    release whose gate finished in `out` before (its summary.json) is not run again. With `perf`, a
    stage fails where it got slower than on the good end (`perf_evaluate`)."""
    if len(spec) != 1:
        raise WsdError("bisect one package at a time: --tvm, --torch, --diffusers or --transformers")
    ((short, text),) = spec.items()
    package = PACKAGES[short]
    try:
        good, bad = parse_range(text)
    except WsdError as exc:
        raise WsdError(f"--{short} {exc}") from None
    versions = between(index_versions(package), good, bad)
    echo(f"[bisect] {package}: {', '.join(versions)}")

    def evaluate_with(version: str, extra: list[str]) -> tuple[envs.Verdicts, Path]:
        summary = out / version / "summary.json"
        if resume and summary.is_file():
            echo(f"[bisect] {version}: reusing {summary}")
            return envs.verdicts(summary), summary
        env = envs.make({package: version}, echo=echo)
        return envs.gate_in(env, out / version, [*gate_args, *extra]), summary

    if perf:
        evaluate = perf_evaluate(versions, evaluate_with, out / "perf-baseline.json")
    else:
        evaluate = lambda version: evaluate_with(version, [])[0]  # noqa: E731
    results = search(versions, evaluate, echo, package)
    body = {"package": package, "range": [good, bad], "versions": versions, "perf": perf}
    body["stages"] = [r.as_json() for r in results]
    out.mkdir(parents=True, exist_ok=True)
    (out / "bisect.json").write_text(json.dumps(body, indent=1) + "\n")
    echo(table(package, results))
    return body
