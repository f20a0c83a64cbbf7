"""Known failures per release, as data (conformance/expectations.toml): what `bisect` and
`matrix` report as expected, with its reason, instead of as new breakage."""

from __future__ import annotations

import fnmatch
import tomllib
from dataclasses import dataclass
from pathlib import Path

FILE = Path(__file__).with_name("expectations.toml")
REQUIRED = ("package", "versions", "backend", "cases", "status", "because")


@dataclass(frozen=True)
class Expectation:
    package: str
    versions: tuple[str, ...]
    backend: str
    cases: tuple[str, ...]
    status: str
    because: str
    seen: str = ""

    def covers(self, stage: str, status: str, versions: dict[str, str]) -> bool:
        """Whether a gate verdict ("sd15-tiny/unet/t1-g7.5 [webgpu]", "error") made with these
        package versions is this known failure."""
        case, _, backend = stage.rpartition(" [")
        return (
            versions.get(self.package) in self.versions
            and backend.rstrip("]") == self.backend
            and status == self.status
            and any(fnmatch.fnmatchcase(case, glob) for glob in self.cases)
        )


def load(path: Path = FILE) -> tuple[Expectation, ...]:
    data = tomllib.loads(path.read_text())
    out = []
    for i, entry in enumerate(data.get("expected", [])):
        missing = [k for k in REQUIRED if k not in entry]
        if missing:
            raise ValueError(f"{path.name}: entry {i + 1} lacks {', '.join(missing)}")
        out.append(
            Expectation(
                **{**entry, "versions": tuple(entry["versions"]), "cases": tuple(entry["cases"])},
            )
        )
    return tuple(out)


def why_expected(stage: str, status: str, versions: dict[str, str], known=None) -> str | None:
    """The reason a failing verdict is a known one, or None."""
    for expectation in load() if known is None else known:
        if expectation.covers(stage, status, versions):
            return expectation.because
    return None
