"""Publishing a cache entry: a dist shares no storage with the cache, and damage is found before use."""

from __future__ import annotations

import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wsd import cache, digests, manifest
from wsd.errors import WsdError


@pytest.fixture
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("WSD_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def built_entry(files: dict[str, bytes]):
    """A cache entry holding a signed dist (as `wsd build` makes one) of the given files."""

    def build(out):
        (out / "dist").mkdir()
        for name, data in files.items():
            (out / "dist" / name).parent.mkdir(parents=True, exist_ok=True)
            (out / "dist" / name).write_bytes(data)
        manifest.write(out / "dist", {"model": "m"})
        return [p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()]

    return cache.get_or_build("dist-test", {"files": sorted(files)}, build, echo=lambda _: None)


FILES = {"m.wasm": b"\0asm" + b"x" * 100, "params_shard_0.bin": bytes(range(256)) * 40, "sub/t.json": b"{}"}


def publish(entry, out):
    cache.publish(entry / "dist", out, cache.entry_digests(entry, "dist"))
    return out


def damage(path, how):
    if how == "truncate":
        with open(path, "r+b") as fh:
            fh.truncate(path.stat().st_size - 1)
    elif how == "edit":  # same size, one byte flipped, in place
        with open(path, "r+b") as fh:
            first = fh.read(1)
            fh.seek(0)
            fh.write(bytes([first[0] ^ 0xFF]))
    else:
        path.unlink()


@pytest.mark.parametrize("how", ["truncate", "edit", "delete"])
def test_damaging_a_published_file_leaves_the_cache_and_other_dists_intact(isolated_cache, tmp_path, how):
    entry = built_entry(FILES)
    one, two = publish(entry, tmp_path / "a" / "m"), publish(entry, tmp_path / "b" / "m")
    damage(one / "params_shard_0.bin", how)
    assert cache.verify(entry) == []
    assert manifest.verify(two) == []
    problems = manifest.verify(one)
    assert len(problems) == 1 and problems[0].startswith("params_shard_0.bin")
    with pytest.raises(WsdError, match="damaged.*params_shard_0.bin.*Rebuild"):
        manifest.require_whole(one)


def test_published_files_are_private_copies(isolated_cache, tmp_path):
    entry = built_entry(FILES)
    out = publish(entry, tmp_path / "m")
    for name in FILES:
        mine, cached = (out / name).stat(), (entry / "dist" / name).stat()
        assert mine.st_ino != cached.st_ino and mine.st_nlink == 1
        assert not os.access(entry / "dist" / name, os.W_OK) or os.geteuid() == 0  # entries are read-only


def test_republishing_replaces_a_dist_whole(isolated_cache, tmp_path):
    entry = built_entry(FILES)
    out = publish(entry, tmp_path / "m")
    (out / "stray.txt").write_text("left by a user")
    publish(entry, out)
    assert manifest.verify(out) == [] and not (out / "stray.txt").exists()
    assert set(os.listdir(tmp_path)) == {"m", "cache"}  # no staging or old copy left behind


def test_a_remembered_digest_is_used_until_the_file_changes(isolated_cache, tmp_path, monkeypatch):
    monkeypatch.setattr(digests, "RACY_S", 0.0)
    path = tmp_path / "f.bin"
    path.write_bytes(b"abc" * 1000)
    first = digests.file_digest(path)
    calls = []
    real = digests.hash_file
    monkeypatch.setattr(digests, "hash_file", lambda p: calls.append(p) or real(p))
    assert digests.file_digest(path) == first and calls == []  # a stat, no read
    damage(path, "edit")  # same size: only ctime/mtime tell
    assert digests.file_digest(path) != first and len(calls) == 1


def test_a_racily_new_file_is_not_remembered(isolated_cache, tmp_path):
    path = tmp_path / "new.bin"
    path.write_bytes(b"fresh")
    digests.remember(path, b"\0" * 32)  # a wrong digest offered for a file changed just now
    assert digests.file_digest(path) == digests.hash_file(path)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    files=st.dictionaries(
        st.from_regex(r"[a-z]{1,8}(/[a-z]{1,8})?\.(bin|json|wasm)", fullmatch=True),
        st.binary(min_size=1, max_size=2048),
        min_size=1,
        max_size=6,
    ),
    pick=st.integers(min_value=0),
    how=st.sampled_from(["truncate", "edit", "delete"]),
)
def test_property_no_damage_to_a_dist_reaches_the_cache(isolated_cache, tmp_path_factory, files, pick, how):
    names = sorted(files)
    if any(a != b and b.startswith(a.rsplit(".", 1)[0] + "/") for a in names for b in names):
        return  # a file and a folder of the same stem cannot both exist
    entry = built_entry(files)
    out = publish(entry, tmp_path_factory.mktemp("dist") / "m")
    victim = out / names[pick % len(names)]
    damage(victim, how)
    assert cache.verify(entry) == []
    assert manifest.verify(out)  # and the damage is seen


@settings(max_examples=60, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=8),
        lambda c: (
            st.lists(c, max_size=3)
            | st.dictionaries(st.sampled_from(["format", "files", "sha256", "size", "model", "x"]), c, max_size=4)
        ),
        max_leaves=12,
    )
)
def test_property_a_fuzzed_manifest_is_a_named_error(tmp_path_factory, body):
    root = tmp_path_factory.mktemp("fuzz")
    (root / "a.bin").write_bytes(b"a")
    (root / manifest.NAME).write_text(json.dumps(body))
    try:
        problems = manifest.verify(root)
    except WsdError as exc:
        assert str(root) in str(exc)
    else:
        assert problems  # whatever it said, a made-up manifest never verifies
