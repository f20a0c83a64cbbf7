"""Locating the runtime sources inside the installed apache-tvm and apache-tvm-ffi wheels."""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from importlib import metadata
from importlib.util import find_spec
from pathlib import Path

from wsd.errors import BuildError

SHIM_DIR = Path(__file__).resolve().parent / "shim"


@dataclass(frozen=True)
class Sources:
    tvm_root: Path  # site-packages/tvm: src/runtime, include, web
    ffi_root: Path  # site-packages/tvm_ffi: include, src, 3rdparty/dlpack
    tvm_version: str
    ffi_version: str


def _package_dir(module: str) -> Path:
    spec = find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise BuildError(f"python package {module!r} is not installed; pip install apache-tvm")
    return Path(list(spec.submodule_search_locations)[0])


def locate() -> Sources:
    tvm_root, ffi_root = _package_dir("tvm"), _package_dir("tvm_ffi")
    for need in (
        tvm_root / "web" / "emcc" / "wasm_runtime.cc",
        tvm_root / "src" / "runtime",
        ffi_root / "src" / "ffi",
        ffi_root / "include",
    ):
        if not need.exists():
            raise BuildError(f"the installed TVM wheel lacks {need}; the web runtime cannot be built from it")
    return Sources(tvm_root, ffi_root, metadata.version("apache-tvm"), metadata.version("apache-tvm-ffi"))


def shim_files() -> dict[str, str]:
    """Relative path -> sha256 of each header wsd supplies in place of the missing ones."""
    return {
        str(p.relative_to(SHIM_DIR)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(SHIM_DIR.rglob("*.h"))
    }


def stage_tree(sources: Sources, root: Path) -> Path:
    """Lay out a TVM-shaped source root (what web/Makefile expects) with the shims in place.

    Copies, not symlinks: the runtime sources include each other by relative paths
    ("../../support/x.h"), which must resolve inside the staged tree.
    """
    for sub in ("src", "include", "web"):
        shutil.copytree(
            sources.tvm_root / sub, root / sub, ignore=shutil.ignore_patterns("__pycache__", "node_modules")
        )
    ffi = root / "3rdparty" / "tvm-ffi"
    for sub in ("include", "src", "3rdparty"):
        shutil.copytree(sources.ffi_root / sub, ffi / sub)
    shutil.copytree(SHIM_DIR, root, dirs_exist_ok=True)
    return root
