"""The artifact server: loopback only, right MIME types, nothing outside its mounts."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wsd.host.server import BadRequestError, resolve, serve


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
    for malformed in ("/a%00", "/%zz", "/%ff", "/" + "a" * 3000):
        with pytest.raises(BadRequestError):
            resolve(mounts, malformed)


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

    from wsd.host.server import app_mounts

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


def raw_request(url: str, target: bytes, headers: bytes = b"") -> tuple[int, bytes]:
    """Send one request with an arbitrary target and headers over a socket: (status, whole response)."""
    import socket

    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + headers + b"\r\n")
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    response = b"".join(chunks)
    return int(response.split(b" ", 2)[1]), response


@pytest.mark.parametrize(
    "target",
    [
        b"\xa0",
        b"/a b",
        b"/a%00b",
        b"/%00",
        b"/index.html%00.js",
        b"/%zz",
        b"/%4",
        b"/%ff%fe",
        b"/%c3",
        b"/" + b"a" * 5000,
        b"/%ed%a0%80",
    ],
)
def test_malformed_paths_get_400_not_a_dropped_connection(tree, target):
    with serve({"/": tree / "site"}) as url:
        status, response = raw_request(url, target)
    assert status == 400, response[:200]


SECRET = b"TOP-SECRET-OUTSIDE-THE-MOUNTS"


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    (root / "site" / "sub").mkdir(parents=True)
    (root / "site" / "index.html").write_bytes(b"<p>index</p>")
    (root / "site" / "sub" / "a.json").write_bytes(b"{}")
    (root / "secret.txt").write_bytes(SECRET)
    (root / "site" / "link").symlink_to(root / "secret.txt")  # a link out of the mount
    with serve({"/": root / "site", "/models/": root / "site" / "sub"}) as url:
        yield url


ALLOWED = {200, 400, 404, 405, 414, 431, 501}
PIECES = [
    "/",
    "..",
    "%2e%2e",
    "%2f",
    "%00",
    "%",
    "%zz",
    "%ff",
    "sub",
    "a.json",
    "link",
    "secret.txt",
    "models",
    "?",
    "#",
    "\\",
    "//",
    ";",
    "%5c",
    "index.html",
    "%c0%af",
    "~",
]


@given(
    path=st.one_of(
        st.lists(st.sampled_from(PIECES), min_size=1, max_size=10).map(lambda p: ("/" + "".join(p)).encode()),
        st.binary(min_size=1, max_size=300).filter(lambda b: b" " not in b and b"\r" not in b and b"\n" not in b),
    ),
    headers=st.lists(
        st.tuples(st.from_regex(r"[A-Za-z-]{1,20}", fullmatch=True), st.binary(max_size=200)), max_size=4
    ).map(lambda hs: b"".join(k.encode() + b": " + v.replace(b"\r", b"").replace(b"\n", b"") + b"\r\n" for k, v in hs)),
)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_property_every_request_is_answered_and_nothing_outside_is_served(fuzz_server, path, headers):
    status, response = raw_request(fuzz_server, path, headers)
    assert status in ALLOWED, (path, response[:200])
    assert SECRET not in response


def test_load_every_file_fetched_concurrently_arrives_whole(tmp_path):
    """As a page does: many parallel fetches of every file of a dist; each response complete and correct."""
    import hashlib
    from concurrent.futures import ThreadPoolExecutor

    from wsd import manifest

    dist = tmp_path / "m"
    dist.mkdir()
    rng = __import__("random").Random(3)
    for i, size in enumerate([0, 1, 4096, 65537, 3 << 20, 24 << 20] + [rng.randrange(1, 1 << 20) for _ in range(20)]):
        (dist / f"params_shard_{i}.bin").write_bytes(rng.randbytes(size))
    table = manifest.write(dist, {"model": "m"})["files"]
    jobs = [name for name in table for _ in range(4)]
    with serve({"/models/m/": dist}) as url:

        def fetch(name):
            with urllib.request.urlopen(f"{url}/models/m/{name}") as resp:  # noqa: S310
                body = resp.read()
                return name, int(resp.headers["Content-Length"]), body

        with ThreadPoolExecutor(32) as pool:
            results = list(pool.map(fetch, jobs))
    assert len(results) == len(jobs)
    for name, length, body in results:
        assert length == len(body) == table[name]["size"], name
        assert hashlib.sha256(body).hexdigest() == table[name]["sha256"], name
