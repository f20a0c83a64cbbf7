"""Linking a model's .wasm against the prebuilt runtime kit.

TVM emits the model's host code and its packed device module as wasm objects
(object_format "o"); wasm-ld joins them with the kit's -O3 runtime objects.
No LTO and no wasm-opt pass over the runtime: a link takes about a second.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from wsd import toolchain
from wsd.proc import run
from wsd.webrt.kit import LINK_FLAGS, RuntimeKit

MODEL_LINK_FLAGS = ("-O0", "-s", "ASSERTIONS=0", "-s", "STACK_OVERFLOW_CHECK=0", "-s", "TOTAL_MEMORY=160MB")


def link_wasm(output: str | Path, objects: Sequence[str | Path], kit: RuntimeKit, options: Sequence[str] = ()) -> Path:
    emcc = toolchain.find("emscripten")
    run([emcc, *MODEL_LINK_FLAGS, *LINK_FLAGS, "-o", output, *kit.objects, *objects, *options], what="model link")
    return Path(output)


def wasm_fcompile(kit: RuntimeKit):
    """An `fcompile` for `Executable.export_library` that links with `kit`."""

    def fcompile(output, objects, options=None, **_):
        objs = [objects] if isinstance(objects, str) else list(objects)
        link_wasm(output, objs, kit, options or ())

    fcompile.object_format = "o"
    return fcompile
