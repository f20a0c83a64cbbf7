"""Where wsd keeps what outlives a checkout: the user cache folder."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """$WSD_CACHE_DIR, else $XDG_CACHE_HOME/wsd, else ~/.cache/wsd.

    Outside the checkout on purpose: CI's fresh clone on the same machine reuses it.
    """
    if os.environ.get("WSD_CACHE_DIR"):
        return Path(os.environ["WSD_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "wsd"


def repo_root() -> Path:
    """The checkout (or installed tree) that holds web/ beside the packages."""
    return Path(__file__).resolve().parent.parent


def web_dir() -> Path:
    return repo_root() / "web"
