"""Where wsd keeps what outlives a checkout (the user cache folder), and where it finds what it
ships besides Python: the web app and runner page (web/) and the golden outputs (golden/)."""

from __future__ import annotations

import os
import sysconfig
from pathlib import Path

SHARE = ("share", "wsd")  # the wheel's data files: <prefix>/share/wsd/{web,golden}


def cache_root() -> Path:
    """$WSD_CACHE_DIR, else $XDG_CACHE_HOME/wsd, else ~/.cache/wsd.

    Outside the checkout on purpose: CI's fresh clone on the same machine reuses it.
    """
    if os.environ.get("WSD_CACHE_DIR"):
        return Path(os.environ["WSD_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "wsd"


def uv_path() -> str | None:
    """The uv scripts/tox installs into the cache's tools folder, else one on PATH."""
    import shutil

    tool = cache_root() / "tools" / "bin" / "uv"
    return str(tool) if tool.is_file() else shutil.which("uv")


def repo_root() -> Path:
    """The folder that holds the packages: a checkout, or site-packages when installed."""
    return Path(__file__).resolve().parent.parent


def is_checkout() -> bool:
    return (repo_root() / "web" / "lib").is_dir() and (repo_root() / "pyproject.toml").is_file()


def share_dir() -> Path:
    """web/ and golden/: the checkout's, else those the wheel installed under <prefix>/share/wsd."""
    if is_checkout():
        return repo_root()
    return Path(sysconfig.get_path("data")).joinpath(*SHARE)


def web_dir() -> Path:
    return share_dir() / "web"


def golden_dir() -> Path:
    return share_dir() / "golden"


def work_dir() -> Path:
    """Where reports and dists go by default: the checkout, or the folder a user runs wsd in."""
    return repo_root() if is_checkout() else Path.cwd()
