"""The runtime kit itself: its outputs, model links against it, and rebuild on corruption."""

from __future__ import annotations

import shutil

import pytest

from wsd import cache
from wsd.errors import BuildError
from wsd.webrt import ensure_kit, link_wasm
from wsd.webrt.kit import OUTPUTS, RUNTIME_UNITS, unit_inputs


def test_kit_holds_the_runtime_objects_and_bundle(kit):
    assert cache.verify(kit.dir) == []
    for name in OUTPUTS:
        assert (kit.dir / name).stat().st_size > 0
    for obj in kit.objects:
        assert obj.read_bytes()[:4] == b"\0asm"  # wasm objects, not LLVM bitcode
    assert "tvmjs" in kit.bundle.read_text()[:200000]
    assert kit.info["tvm"] and kit.info["emcc"]


def test_link_rejects_a_broken_object(kit, tmp_path):
    bad = tmp_path / "bad.o"
    bad.write_bytes(b"not a wasm object")
    with pytest.raises(BuildError, match="model link"):
        link_wasm(tmp_path / "m.wasm", [bad], kit)


def test_a_corrupted_cached_kit_is_rebuilt(kit, tmp_path, monkeypatch):
    """Copy the real kit and its objects into a private cache, damage both levels, and watch
    ensure_kit relink the kit from the verified objects and recompile only the damaged one."""
    real, private = kit.dir.parent.parent, tmp_path / "cache"
    shutil.copytree(real / "npm", private / "npm", symlinks=True)  # the bundler packages, as they are
    copied = private / "webrt" / kit.dir.name
    shutil.copytree(kit.dir, copied)
    objects = {u: real / "webrt-unit" / cache.key_of(unit_inputs(kit.info, u)) for u in RUNTIME_UNITS}
    for entry in objects.values():
        shutil.copytree(entry, private / "webrt-unit" / entry.name)
    monkeypatch.setenv("WSD_CACHE_DIR", str(private))
    damage(copied / "wasm_runtime.o")
    damage(private / "webrt-unit" / objects["tvmjs_support"].name / "tvmjs_support.o")  # a 2-second unit
    messages = []
    rebuilt = ensure_kit(echo=messages.append)
    assert rebuilt.dir == copied
    assert cache.verify(rebuilt.dir) == []
    assert any("corrupt" in m and "wasm_runtime.o" in m for m in messages)
    assert any("corrupt" in m and "tvmjs_support.o" in m for m in messages)
    assert "webrt:   wasm_runtime.o cached" in messages, messages
    assert any(m.startswith("webrt:   tvmjs_support.o compiled") for m in messages), messages
    assert (copied / "wasm_runtime.o").read_bytes() == (kit.dir / "wasm_runtime.o").read_bytes()


def damage(path):
    path.chmod(0o644)
    path.write_bytes(path.read_bytes()[:-100] + b"\0" * 100)
