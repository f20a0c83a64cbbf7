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


def test_versioned_requests_are_immutable_others_revalidate(tree):
    from wsd.cache import file_digest

    wasm = tree / "site" / "m.wasm"
    version = file_digest(wasm).hex()[:16]
    with serve({"/": tree / "site"}) as url:
        with urllib.request.urlopen(f"{url}/m.wasm?v={version}") as resp:  # noqa: S310
            assert "immutable" in resp.headers["Cache-Control"]
        with urllib.request.urlopen(f"{url}/m.wasm?v={'0' * 16}") as resp:  # noqa: S310 (a stale key)
            assert resp.headers["Cache-Control"] == "no-cache"
        with urllib.request.urlopen(f"{url}/m.wasm") as resp:  # noqa: S310
            assert resp.headers["Cache-Control"] == "no-cache"
            assert resp.headers["X-Content-Type-Options"] == "nosniff"


def test_app_mounts_list_built_models(tmp_path):
    import json

    from conformance.server import app_mounts

    (tmp_path / "dist" / "tiny").mkdir(parents=True)
    (tmp_path / "dist" / "tiny" / "manifest.json").write_text("{}")
    (tmp_path / "dist" / "half-built").mkdir()
    bundle = tmp_path / "tvmjs.bundle.js"
    bundle.write_text("//")
    with serve(app_mounts(bundle, tmp_path / "dist")) as url:
        with urllib.request.urlopen(f"{url}/models/index.json") as resp:  # noqa: S310
            assert json.loads(resp.read()) == {"models": ["tiny"]}
        with urllib.request.urlopen(f"{url}/") as resp:  # noqa: S310
            assert b"Stable Diffusion" in resp.read()
        with urllib.request.urlopen(f"{url}/lib/tokenizer.js") as resp:  # noqa: S310
            assert resp.headers["Content-Type"] == "text/javascript"
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(f"{url}/models/../../etc/passwd")  # noqa: S310
