"""`wsd toolchain`: find the system parts wsd needs and, as root on Debian, install them.

Each part is one declarative entry. Finding is cheap (a which and a --version), so a
second run with everything present takes a second or two.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess  # nosec B404
from dataclasses import dataclass
from pathlib import Path

from wsd.errors import ToolchainError
from wsd.proc import version_of


@dataclass(frozen=True)
class Part:
    name: str
    debian_package: str
    why: str
    env_override: str = ""  # variable that points at the executable instead of PATH
    executable: str = ""  # looked up on PATH; empty for a data-only package
    marker: str = ""  # a file that proves a data-only package is present
    without_root: str = ""  # how to get it without root (a user install), where there is a way
    fallback: object = None  # () -> path or None: where a user install puts it

    def locate(self) -> str | None:
        if self.env_override and os.environ.get(self.env_override):
            path = os.environ[self.env_override]
            return path if os.path.isfile(path) and os.access(path, os.X_OK) else None
        if self.executable:
            return shutil.which(self.executable) or (self.fallback() if self.fallback else None)
        return self.marker if os.path.isfile(self.marker) else None

    def version(self, located: str) -> str:
        if self.executable:
            return version_of([located, "--version"]) or "unknown"
        try:
            return json.loads(Path(self.marker).read_text())["version"]
        except (OSError, ValueError, KeyError):
            return "unknown"


def playwright_chromium() -> str | None:
    """The Chromium `playwright install chromium` downloads (no root needed), newest first."""
    root = Path(os.environ.get("PLAYWRIGHT_BROWSERS_PATH") or Path.home() / ".cache" / "ms-playwright")
    found = sorted(root.glob("chromium-*/chrome-linux*/chrome"), reverse=True)
    return str(found[0]) if found else None


PARTS = (
    Part(
        "chromium",
        "chromium",
        "headless browser with WebGPU (SwiftShader without a GPU)",
        env_override="WSD_CHROMIUM",
        executable="chromium",
        without_root="python -m playwright install chromium",
        fallback=playwright_chromium,
    ),
    Part(
        "emscripten",
        "emscripten",
        "builds the tvmjs wasm runtime and links model .wasm",
        env_override="WSD_EMCC",
        executable="emcc",
    ),
    Part(
        "node-acorn",
        "node-acorn",
        "JS parser emscripten's optimizer imports",
        marker="/usr/share/nodejs/acorn/package.json",
    ),
    Part("node", "nodejs", "runs emscripten's JS tools and the tvmjs bundler", executable="node"),
    Part("npm", "npm", "installs the tvmjs bundler's npm packages", executable="npm"),
)


@dataclass
class Found:
    part: Part
    path: str | None
    version: str | None


def survey() -> list[Found]:
    found = []
    for part in PARTS:
        path = part.locate()
        found.append(Found(part, path, part.version(path) if path else None))
    return found


def can_install() -> bool:
    """apt-get as root on a Debian-like system."""
    return hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get") is not None


def install_command(packages: list[str]) -> list[str]:
    return ["apt-get", "install", "-y", "--no-install-recommends", *packages]


def _apt_install(packages: list[str]) -> None:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update", "-q"], install_command(packages)):
        proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # nosec B603
        if proc.returncode != 0:
            raise ToolchainError(f"`{' '.join(cmd)}` failed:\n{proc.stdout[-2000:]}")


def ensure(install: bool = True, echo=print) -> list[Found]:
    """Find every part; install the missing ones where allowed; raise with the fix otherwise."""
    found = survey()
    missing = [f.part for f in found if f.path is None]
    if missing and install and can_install():
        echo(f"installing: {' '.join(p.debian_package for p in missing)}")
        _apt_install([p.debian_package for p in missing])
        found = survey()
        missing = [f.part for f in found if f.path is None]
    for f in found:
        status = f"{f.version}  ({f.path})" if f.path else "MISSING"
        echo(f"{f.part.name:<11} {status}")
    if missing:
        lines = [f"  {p.name}: {p.why}" + (f" (or set {p.env_override})" if p.env_override else "") for p in missing]
        user = [f"  {p.without_root}" for p in missing if p.without_root]
        raise ToolchainError(
            "missing system parts:\n"
            + "\n".join(lines)
            + "\ninstall them with:\n  sudo "
            + " ".join(install_command([p.debian_package for p in missing]))
            + ("\nor, without root:\n" + "\n".join(user) if user else "")
        )
    return found


def part(name: str) -> Part:
    return next(p for p in PARTS if p.name == name)


def find(name: str) -> str:
    """Path of one part, or a ToolchainError saying how to get it."""
    tool = part(name)
    path = tool.locate()
    if path is None:
        hint = f" or set {tool.env_override}" if tool.env_override else ""
        user = f"; without root: {tool.without_root}" if tool.without_root else ""
        raise ToolchainError(
            f"{name} not found ({tool.why}). Run `wsd toolchain`, or: "
            f"sudo {' '.join(install_command([tool.debian_package]))}{hint}{user}"
        )
    return path
