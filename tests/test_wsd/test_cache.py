"""The content-keyed cache: reuse when whole, rebuild when corrupt or when an input changes."""

from __future__ import annotations

import json

import pytest

from wsd import cache
from wsd.webrt import kit as kit_mod
from wsd.webrt import sources


@pytest.fixture
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("WSD_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def counting_builder(calls):
    def build(out):
        calls.append(out)
        (out / "a.bin").write_bytes(b"artifact %d" % len(calls))
        return ["a.bin"]

    return build


def test_built_once_then_reused(isolated_cache):
    calls = []
    first = cache.get_or_build("thing", {"v": 1}, counting_builder(calls), echo=lambda _: None)
    second = cache.get_or_build("thing", {"v": 1}, counting_builder(calls), echo=lambda _: None)
    assert first == second and len(calls) == 1
    assert first.parent.parent == isolated_cache
    assert cache.verify(first) == []


def test_changed_input_is_a_new_key(isolated_cache):
    calls = []
    a = cache.get_or_build("thing", {"v": 1}, counting_builder(calls), echo=lambda _: None)
    b = cache.get_or_build("thing", {"v": 2}, counting_builder(calls), echo=lambda _: None)
    assert a != b and len(calls) == 2


@pytest.mark.parametrize("damage", ["edit", "delete", "manifest"])
def test_a_damaged_entry_is_rebuilt_not_used(isolated_cache, damage):
    calls, messages = [], []
    entry = cache.get_or_build("thing", {"v": 1}, counting_builder(calls), echo=messages.append)
    if damage == "edit":
        (entry / "a.bin").write_bytes(b"tampered")
    elif damage == "delete":
        (entry / "a.bin").unlink()
    else:
        (entry / cache.MANIFEST).write_text("{not json")
    assert cache.verify(entry)
    again = cache.get_or_build("thing", {"v": 1}, counting_builder(calls), echo=messages.append)
    assert len(calls) == 2 and cache.verify(again) == []
    assert (again / "a.bin").read_bytes() == b"artifact 2"
    assert any("corrupt" in m for m in messages)


def test_a_failed_build_leaves_no_entry(isolated_cache):
    def broken(out):
        (out / "half.bin").write_bytes(b"x")
        raise RuntimeError("compiler crashed")

    with pytest.raises(RuntimeError):
        cache.get_or_build("thing", {"v": 1}, broken, echo=lambda _: None)
    assert not (isolated_cache / "thing" / cache.key_of({"v": 1})).exists()


def test_manifest_records_inputs_and_hashes(isolated_cache):
    entry = cache.get_or_build("thing", {"v": 1}, counting_builder([]), echo=lambda _: None)
    manifest = json.loads((entry / cache.MANIFEST).read_text())
    assert manifest["inputs"] == {"v": 1}
    assert manifest["files"]["a.bin"] == cache.sha256_file(entry / "a.bin")


def test_kit_key_covers_versions_and_our_headers(monkeypatch):
    src = sources.locate()
    base = cache.key_of(kit_mod.kit_inputs(src))
    shims = sources.shim_files()
    assert "include/tvm/support/serializer.h" in shims and len(shims) == 9
    monkeypatch.setattr(sources, "shim_files", lambda: {**shims, "src/support/arena.h": "0" * 64})
    assert cache.key_of(kit_mod.kit_inputs(src)) != base
    monkeypatch.undo()
    npm = kit_mod.npm_inputs(src)
    assert set(npm) == {"package.json", "package-lock.json"}  # a changed package.json is a new kit
    monkeypatch.setattr(kit_mod, "npm_inputs", lambda _: {**npm, "package.json": "0" * 64})
    assert cache.key_of(kit_mod.kit_inputs(src)) != base
    monkeypatch.undo()
    monkeypatch.setattr(kit_mod, "emcc_version", lambda: "9.9.9")
    assert cache.key_of(kit_mod.kit_inputs(src)) != base
    monkeypatch.undo()
    monkeypatch.setattr(kit_mod, "LINK_FLAGS", (*kit_mod.LINK_FLAGS, "-g"))  # the glue link's
    assert cache.key_of(kit_mod.kit_inputs(src)) != base
    monkeypatch.undo()  # the TVM version alone, nothing else patched
    assert (
        cache.key_of(kit_mod.kit_inputs(src.__class__(src.tvm_root, src.ffi_root, "0.26.0", src.ffi_version))) != base
    )


def test_a_changed_runtime_kit_is_a_new_build_key(monkeypatch, tiny_folder, tiny_spec):
    """The .wasm is linked against the kit: a kit change must relink, never serve a stale .wasm."""
    from wsd.build import BuildOptions, build_key_inputs
    from wsd.webrt import kit as kit_module

    opts = BuildOptions("sd15-tiny", random_init=True)
    base = cache.key_of(build_key_inputs(opts, tiny_spec, tiny_folder))
    monkeypatch.setattr(kit_module, "kit_key", lambda: "0" * 20)
    assert cache.key_of(build_key_inputs(opts, tiny_spec, tiny_folder)) != base
    native = BuildOptions("sd15-tiny", random_init=True, target="llvm")
    assert "webrt_kit" not in build_key_inputs(native, tiny_spec, tiny_folder)


def test_changed_model_link_flags_are_a_new_build_key(monkeypatch, tiny_folder, tiny_spec):
    """The model's own link flags (the kit's shared ones are in the kit key): a change must
    relink (they were outside every key until 2026-12-06)."""
    from wsd.build import BuildOptions, build_key_inputs
    from wsd.webrt import link as link_module

    opts = BuildOptions("sd15-tiny", random_init=True)
    base = cache.key_of(build_key_inputs(opts, tiny_spec, tiny_folder))
    monkeypatch.setattr(link_module, "MODEL_LINK_FLAGS", (*link_module.MODEL_LINK_FLAGS, "-g"))
    assert cache.key_of(build_key_inputs(opts, tiny_spec, tiny_folder)) != base


def test_sealed_entries_stay_runnable(isolated_cache):
    """Sealing drops write bits only: a tool in an entry (npm's node_modules/.bin) still runs."""
    import subprocess

    def build(out):
        tool = out / "tool.sh"
        tool.write_text("#!/bin/sh\necho ran\n")
        tool.chmod(0o755)
        (out / "data.txt").write_text("x")
        return ["tool.sh", "data.txt"]

    entry = cache.get_or_build("tools", {"v": 1}, build, echo=lambda _: None)
    assert subprocess.run([str(entry / "tool.sh")], capture_output=True, text=True, check=True).stdout == "ran\n"  # nosec B603
    assert (entry / "tool.sh").stat().st_mode & 0o222 == 0 and (entry / "data.txt").stat().st_mode & 0o111 == 0
