"""The versions every result carries, so a report says which stack produced it."""

from __future__ import annotations

import platform
from functools import lru_cache
from importlib import metadata

from wsd import toolchain


def _dist(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _tool(name: str) -> str | None:
    part = toolchain.part(name)
    path = part.locate()
    return part.version(path) if path else None


@lru_cache(maxsize=1)
def emcc_version() -> str | None:
    line = _tool("emscripten")
    # "emcc (Emscripten gcc/clang-like replacement ...) 3.1.6 ()" -> "3.1.6"
    if line and ")" in line:
        tail = line.split(")", 1)[1].strip().split()
        return tail[0] if tail else line
    return line


# the stack every result names, in this order
NAMES = ("python", "torch", "tvm", "tvm_ffi", "diffusers", "transformers", "chromium", "emscripten")


def collect() -> dict[str, str | None]:
    return {
        "python": platform.python_version(),
        "torch": _dist("torch"),
        "tvm": _dist("apache-tvm"),
        "tvm_ffi": _dist("apache-tvm-ffi"),
        "diffusers": _dist("diffusers"),
        "transformers": _dist("transformers"),
        "chromium": _tool("chromium"),
        "emscripten": emcc_version(),
    }
