"""What a dist ships, for a user who audits what their browser runs: a CycloneDX document
(`sbom.cdx.json`) of every component, and its shipped part in the manifest (`sbom`).

Shipped in a webgpu dist: the model's `.wasm` (TVM's generated kernels, TVM's and tvm-ffi's C++
runtime and emscripten's libc, linked together) and tvmjs, the JS runtime the page loads. tvmjs
declares no runtime dependencies, so none of the npm packages that build it (rollup, TypeScript,
...) reach the page: they are listed with scope "excluded" (build tools), with their lock hashes.
"""

from __future__ import annotations

import json
from pathlib import Path

from wsd import versions

FILE = "sbom.cdx.json"


def _component(name: str, version: str | None, kind: str = "library", **extra) -> dict:
    return {"type": kind, "name": name, "version": version or "unknown", **extra}


def _pypi(name: str) -> dict:
    from importlib import metadata

    version = metadata.version(name)
    return _component(name, version, purl=f"pkg:pypi/{name}@{version}")


def _npm_tools(lock: Path) -> list[dict]:
    """Every package of an npm lock (v2/v3 `packages`), as excluded build tools."""
    packages = json.loads(lock.read_text()).get("packages", {})
    out = []
    for path, info in sorted(packages.items()):
        if not path.startswith("node_modules/") or "version" not in info:
            continue
        name = path.rsplit("node_modules/", 1)[1]
        item = _component(name, info["version"], purl=f"pkg:npm/{name}@{info['version']}", scope="excluded")
        if info.get("integrity"):
            algo, _, digest = info["integrity"].partition("-")
            item["hashes"] = [{"alg": algo.upper().replace("SHA", "SHA-"), "content": digest}]
        out.append(item)
    return out


def shipped(target: str, library: str, bundle: Path | None = None) -> list[dict]:
    """The components a user's browser (webgpu) or process (llvm) runs."""
    from wsd.cache import sha256_file

    tvm, ffi = _pypi("apache-tvm"), _pypi("apache-tvm-ffi")
    if target != "webgpu":  # the .so needs the installed TVM runtime to load
        return [{**tvm, "description": f"loads {library} (libtvm)"}]
    parts = "TVM's C++ runtime units (wasm_runtime, tvmjs_support, webgpu_runtime)"
    out = [
        {**tvm, "description": f"{parts} and the generated kernels, compiled into {library}"},
        {**ffi, "description": f"tvm-ffi's C++ sources, compiled into {library}"},
        _component(
            "emscripten", versions.emcc_version(), "application", description=f"its libc, linked into {library}"
        ),
    ]
    if bundle is not None:
        tvmjs = _component(
            "tvmjs",
            tvm["version"],
            description="the JS runtime the page loads (/tvmjs.bundle.js), built from apache-tvm's web/",
            hashes=[{"alg": "SHA-256", "content": sha256_file(bundle)}],
        )
        out.append(tvmjs)
    return out


def write(out: Path, target: str, library: str, bundle: Path | None, npm_lock: Path | None) -> dict:
    """sbom.cdx.json in the dist; returns the manifest's `sbom` entry."""
    components = shipped(target, library, bundle)
    tools = _npm_tools(npm_lock) if npm_lock is not None and npm_lock.is_file() else []
    doc = {
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "metadata": {"component": _component(library, None, "file")},
        "components": components + tools,
    }
    (out / FILE).write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    return {
        "file": FILE,
        "format": "CycloneDX 1.5",
        "shipped": [{k: c[k] for k in ("name", "version")} for c in components],
        "build_tools": len(tools),
        "npm_packages_shipped": 0,  # tvmjs declares no runtime dependencies
    }
