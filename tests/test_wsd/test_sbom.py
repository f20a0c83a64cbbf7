"""The bill of materials a dist carries (wsd/sbom.py): what a browser runs, named with versions and
hashes in the manifest, and every build tool in sbom.cdx.json."""

from __future__ import annotations

import json

from wsd import manifest
from wsd.build import BuildOptions, build
from wsd.cache import sha256_file

QUIET = {"echo": lambda *_: None, "progress": False}


def test_a_webgpu_dist_names_what_the_page_runs(tmp_path):
    from wsd.webrt import ensure_kit

    dist = build(BuildOptions("sd15-tiny", random_init=True), tmp_path, **QUIET).out
    entry = manifest.load(dist)["sbom"]
    assert [c["name"] for c in entry["shipped"]] == ["apache-tvm", "apache-tvm-ffi", "emscripten", "tvmjs"]
    assert entry["npm_packages_shipped"] == 0 and entry["build_tools"] > 100
    assert manifest.verify(dist) == []  # sbom.cdx.json is one of the dist's signed files
    doc = json.loads((dist / entry["file"]).read_text())
    assert doc["bomFormat"] == "CycloneDX"
    tvmjs = next(c for c in doc["components"] if c["name"] == "tvmjs")
    assert tvmjs["hashes"] == [{"alg": "SHA-256", "content": sha256_file(ensure_kit().bundle)}]
    tools = [c for c in doc["components"] if c.get("scope") == "excluded"]
    assert tools and all(c["purl"].startswith("pkg:npm/") for c in tools)
    assert any(c["name"] == "rollup" for c in tools)


def test_a_native_dist_names_the_runtime_it_needs(tmp_path):
    dist = build(BuildOptions("sd15-tiny", random_init=True, target="llvm"), tmp_path, **QUIET).out
    entry = manifest.load(dist)["sbom"]
    assert [c["name"] for c in entry["shipped"]] == ["apache-tvm"] and entry["build_tools"] == 0
