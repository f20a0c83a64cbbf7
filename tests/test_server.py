"""The artifact server: loopback only, right MIME types, nothing outside its mounts."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest

from conformance.server import resolve, serve


@pytest.fixture
def tree(tmp_path):
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "index.html").write_text("<p>hi</p>")
    (tmp_path / "site" / "m.wasm").write_bytes(b"\0asm\1\0\0\0")
    (tmp_path / "secret.txt").write_text("no")
    (tmp_path / "one.js").write_text("1")
    return tmp_path


def test_resolve_stays_inside_mounts(tree):
    mounts = {"/": tree / "site", "/lib.js": tree / "one.js"}
    assert resolve(mounts, "/") == (tree / "site" / "index.html").resolve()
    assert resolve(mounts, "/m.wasm?x=1") == (tree / "site" / "m.wasm").resolve()
    assert resolve(mounts, "/lib.js") == (tree / "one.js").resolve()
    for evil in ("/../secret.txt", "/%2e%2e/secret.txt", "/..%2fsecret.txt", "/nothing", "/lib.js/x"):
        assert resolve(mounts, evil) is None, evil


def test_serves_on_loopback_with_wasm_mime(tree):
    with serve({"/": tree / "site"}) as url:
        assert url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(f"{url}/m.wasm") as resp:  # noqa: S310
            assert resp.headers["Content-Type"] == "application/wasm"
            assert resp.read().startswith(b"\0asm")
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"{url}/../secret.txt")  # noqa: S310
        assert err.value.code == 404
