"""Build (once per key) the tvmjs runtime: wasm objects, the JS glue and tvmjs.bundle.js.

The runtime is compiled to plain wasm objects at -O3 instead of LLVM bitcode, so a
model links against it in about a second (wasm-ld only) instead of re-optimizing the
whole runtime with LTO on every link.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from wsd import cache, toolchain
from wsd.proc import run
from wsd.versions import emcc_version
from wsd.webrt import sources as src

RUNTIME_UNITS = ("wasm_runtime", "tvmjs_support", "webgpu_runtime")
# Bumped whenever the recipe below changes in a way the key would not see.
RECIPE_VERSION = 3
COMPILE_FLAGS = ("-O3", "-std=c++17", "-Wno-ignored-attributes")
# The JS glue is linked without the JS minifier, which fails under emscripten 3.1.6,
# and without assertions, whose stack checks break instantiation under tvmjs.
GLUE_FLAGS = ("-O0", "-s", "ASSERTIONS=0", "-s", "STACK_OVERFLOW_CHECK=0")
LINK_FLAGS = (
    "--no-entry",
    "-s",
    "WASM_BIGINT=1",
    "-s",
    "ALLOW_MEMORY_GROWTH=1",
    "-s",
    "STANDALONE_WASM=1",
    "-s",
    "ERROR_ON_UNDEFINED_SYMBOLS=0",
)
OUTPUTS = tuple(f"{u}.o" for u in RUNTIME_UNITS) + ("tvmjs.bundle.js", "tvmjs_runtime.wasm")


@dataclass(frozen=True)
class RuntimeKit:
    """A verified cache entry: what a model link and the browser page need."""

    dir: Path

    @property
    def objects(self) -> list[Path]:
        return [self.dir / f"{u}.o" for u in RUNTIME_UNITS]

    @property
    def bundle(self) -> Path:
        return self.dir / "tvmjs.bundle.js"

    @property
    def info(self) -> dict:
        return json.loads((self.dir / cache.MANIFEST).read_text())["inputs"]


def kit_inputs(sources: src.Sources) -> dict:
    """Everything the runtime build depends on: the cache key is derived from this."""
    return {
        "tvm": sources.tvm_version,
        "tvm_ffi": sources.ffi_version,
        "emcc": emcc_version(),
        "shims": src.shim_files(),
        "npm": npm_inputs(sources),
        "recipe": RECIPE_VERSION,
        "compile_flags": list(COMPILE_FLAGS),
        "glue_flags": list(GLUE_FLAGS),
        "link_flags": list(LINK_FLAGS),  # the glue link takes them too
    }


def unit_inputs(kit: dict, unit: str) -> dict:
    """One runtime object's key, from the kit's inputs (`kit_inputs`). Objects are cached apart
    from the kit, so a kit entry found damaged is relinked from verified objects (seconds)
    instead of recompiled (wasm_runtime.cc alone takes a minute at -O3)."""
    return {"unit": unit, **{k: kit[k] for k in ("tvm", "tvm_ffi", "emcc", "shims", "recipe", "compile_flags")}}


def _include_flags(root: Path) -> list[str]:
    ffi = root / "3rdparty" / "tvm-ffi"
    dirs = [
        root,
        root / "include",
        ffi / "include",
        ffi / "3rdparty" / "dlpack" / "include",
        root / "3rdparty" / "compiler-rt",
    ]
    return [f"-I{d}" for d in dirs]


def npm_inputs(sources: src.Sources) -> dict:
    """What the bundler's node_modules depend on (its cache key, and part of the kit's)."""
    web = sources.tvm_root / "web"
    return {name: cache.sha256_file(web / name) for name in ("package.json", "package-lock.json")}


def npm_packages(sources: src.Sources, echo=print) -> Path:
    """node_modules for the tvmjs bundler, installed once per package.json/package-lock.json."""
    web = sources.tvm_root / "web"

    def install(out: Path) -> list[str]:
        shutil.copy(web / "package.json", out / "package.json")
        shutil.copy(web / "package-lock.json", out / "package-lock.json")
        # `npm install`, not `npm ci`: the lock file shipped in the wheels is out of sync
        # with their package.json, which `npm ci` refuses.
        echo("webrt: npm install (tvmjs bundler packages)")
        run([toolchain.find("npm"), "install", "--no-audit", "--no-fund"], cwd=out, what="npm install")
        return ["package-lock.json", "node_modules/.package-lock.json"]

    return cache.get_or_build("npm", npm_inputs(sources), install, echo)


def _build(sources: src.Sources, inputs: dict, out: Path, echo, force: bool = False) -> list[str]:
    emcc = toolchain.find("emscripten")
    node_modules = npm_packages(sources, echo) / "node_modules"
    with tempfile.TemporaryDirectory(prefix="wsd-webrt-") as tmp:
        root = src.stage_tree(sources, Path(tmp))
        web = root / "web"
        wasm_dir = web / "dist" / "wasm"
        wasm_dir.mkdir(parents=True, exist_ok=True)
        includes = _include_flags(root)

        def compile_unit(unit: str) -> str:
            t0, compiled = time.perf_counter(), []

            def compile_into(out: Path) -> list[str]:
                compiled.append(unit)
                run(
                    [emcc, *includes, *COMPILE_FLAGS, "-c", "-o", out / f"{unit}.o", web / "emcc" / f"{unit}.cc"],
                    cwd=web,
                    what=f"emcc {unit}.cc",
                )
                return [f"{unit}.o"]

            entry = cache.get_or_build("webrt-unit", unit_inputs(inputs, unit), compile_into, echo, force)
            shutil.copy(entry / f"{unit}.o", wasm_dir / f"{unit}.o")
            return f"compiled in {time.perf_counter() - t0:.0f}s" if compiled else "cached"

        echo(f"webrt: runtime objects {', '.join(RUNTIME_UNITS)} (emcc {emcc_version()}; minutes, once per key)")
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1)) as pool:
            for unit, how in zip(RUNTIME_UNITS, pool.map(compile_unit, RUNTIME_UNITS), strict=False):
                echo(f"webrt:   {unit}.o {how}")

        echo("webrt: linking the JS glue")
        objects = [wasm_dir / f"{u}.o" for u in RUNTIME_UNITS]  # as compile_unit wrote them
        run(
            [
                emcc,
                *GLUE_FLAGS,
                "-o",
                wasm_dir / "tvmjs_runtime.js",
                *objects,
                *LINK_FLAGS,
                "--pre-js",
                web / "emcc" / "preload.js",
            ],
            cwd=web,
            what="emcc glue link",
        )
        run(
            [
                sys.executable,
                web / "emcc" / "decorate_as_wasi.py",
                wasm_dir / "tvmjs_runtime.js",
                web / "src" / "tvmjs_runtime_wasi.js",
                "es",
            ],
            cwd=web,
            what="decorate_as_wasi",
        )

        echo("webrt: bundling tvmjs.bundle.js")
        (web / "node_modules").symlink_to(node_modules, target_is_directory=True)
        run([toolchain.find("npm"), "run", "build"], cwd=web, what="npm run build (rollup)")

        for obj in objects:
            shutil.copy(obj, out / obj.name)
        shutil.copy(web / "lib" / "index.js", out / "tvmjs.bundle.js")
        shutil.copy(wasm_dir / "tvmjs_runtime.wasm", out / "tvmjs_runtime.wasm")
    return list(OUTPUTS)


def kit_key() -> str:
    """The cache key of the kit this machine's TVM and emcc make: a model .wasm links against it,
    so a build's own key includes it (a changed kit relinks instead of serving a stale .wasm)."""
    return cache.key_of(kit_inputs(src.locate()))


def runtime_bundle(echo=print) -> Path:
    """The tvmjs bundle the page and the Dawn runner load: `WSD_TVMJS_BUNDLE` where the kit was
    carried to a machine that cannot build it (a lent GPU machine), else the cached kit's."""
    carried = os.environ.get("WSD_TVMJS_BUNDLE")
    return Path(carried) if carried else ensure_kit(echo=echo).bundle


def ensure_kit(echo=print, force: bool = False) -> RuntimeKit:
    """The runtime kit for the installed TVM: reused when its key and hashes match, else rebuilt."""
    sources = src.locate()
    inputs = kit_inputs(sources)
    entry = cache.get_or_build("webrt", inputs, lambda out: _build(sources, inputs, out, echo, force), echo, force)
    for unit in RUNTIME_UNITS:  # a kit made before objects were cached apart seeds their entries
        cache.get_or_build("webrt-unit", unit_inputs(inputs, unit), partial(_copy_object, entry, unit), echo)
    return RuntimeKit(entry)


def _copy_object(kit_entry: Path, unit: str, out: Path) -> list[str]:
    shutil.copy(kit_entry / f"{unit}.o", out / f"{unit}.o")
    return [f"{unit}.o"]
