"""A static file server on 127.0.0.1 for the page and artifacts the browser loads.

Paths are served from a mount table (URL prefix -> folder or file), so artifacts stay
where they were built. Requests outside a mount, or escaping it, get 404; malformed paths
(NUL, bad percent-encoding, non-UTF-8, over-long) get 400; every request gets an answer.
"""

from __future__ import annotations

import http.server
import mimetypes
import os
import re
import threading
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from wsd.cache import file_digest

MIME = {
    ".wasm": "application/wasm",
    ".json": "application/json",
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".html": "text/html; charset=utf-8",
    ".bin": "application/octet-stream",
}


MAX_PATH = 2048  # longer request paths are refused (400): no file we serve has such a name
_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")


class BadRequestError(ValueError):
    """A request path that cannot name a file: answered with 400."""


def split(raw: str):
    # The request target is a path: never read "//host/..." as a network location.
    return urlsplit("/" + raw.lstrip("/")) if raw.startswith("//") else urlsplit(raw)


def url_path(raw: str) -> str:
    """The decoded path of a request target; BadRequestError for NUL, bad percent-encoding, non-UTF-8
    or over-long paths (each would otherwise raise deep in the filesystem calls)."""
    try:
        path = split(raw).path
    except ValueError:
        raise BadRequestError("malformed request target") from None
    if len(path) > MAX_PATH:
        raise BadRequestError(f"path longer than {MAX_PATH} characters")
    if _PERCENT.search(path):
        raise BadRequestError("malformed percent-encoding")
    try:
        decoded = unquote(path, errors="strict")
    except UnicodeDecodeError:
        raise BadRequestError("path is not UTF-8") from None
    if "\0" in decoded or any(ord(c) < 0x20 or 0xD800 <= ord(c) <= 0xDFFF for c in decoded):
        raise BadRequestError("control character in path")
    if not decoded.startswith("/"):
        raise BadRequestError("path must start with /")
    return decoded


def resolve(mounts: dict[str, Path], url: str) -> Path | None:
    """The file a request target names, or None if it is outside every mount.
    BadRequestError when the target is malformed."""
    path = url_path(url)
    for prefix in sorted(mounts, key=len, reverse=True):
        if callable(mounts[prefix]):
            continue
        target = Path(mounts[prefix]).resolve()
        if target.is_file():
            if path == prefix:
                return target
            continue
        if not path.startswith(prefix):
            continue
        rel = path[len(prefix) :].lstrip("/") or "index.html"
        try:
            candidate = (target / rel).resolve()
            if candidate.is_relative_to(target) and candidate.is_file():
                return candidate
        except (OSError, ValueError):  # a name too long for the filesystem, say
            return None
    return None


IMMUTABLE = "public, max-age=31536000, immutable"


def cache_control(path: Path, query: str) -> str:
    """Versioned requests (`?v=<sha256 prefix>`, lib/integrity.js's keys) whose version is the
    file's own may be cached forever; anything else must be revalidated."""
    version = parse_qs(query).get("v", [""])[0]
    if len(version) >= 16 and file_digest(path).hex().startswith(version):  # remembered per inode (wsd.digests)
        return IMMUTABLE
    return "no-cache"


def _handler(mounts: dict):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: a page fetches dozens of shards
        # http.server answers a request it reads as HTTP/0.9 (a two-word request line: "GET \xa0
        # HTTP/1.1" splits on the non-breaking space) with no status line at all; never do that.
        default_request_version = "HTTP/1.0"

        def do_GET(self):  # noqa: N802 (http.server's naming)
            self._answer(body=True)

        def do_HEAD(self):  # noqa: N802
            self._answer(body=False)

        def _answer(self, body: bool) -> None:
            # Every request gets an HTTP answer: a fault in here is a 500, never a dropped connection.
            try:
                self._route(body)
            except BadRequestError as exc:
                self._error(400, str(exc))
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the client went away; nothing to answer
            except Exception as exc:  # noqa: BLE001 (the last line of defence)
                self._error(500, type(exc).__name__)

        def _route(self, body: bool) -> None:
            url = split(self.path)
            generated = mounts.get(url_path(self.path))
            if callable(generated):  # a generated document (a model listing)
                self._send_bytes(generated(), "application/json", "no-cache", body)
                return
            path = resolve(mounts, self.path)
            if path is None:
                self._error(404, "not found")
                return
            ctype = MIME.get(path.suffix) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            with open(path, "rb") as fh:
                size = os.fstat(fh.fileno()).st_size
                self._headers(size, ctype, cache_control(path, url.query))
                if body:  # streamed: a 1.6 GB shard must not be read into memory per request
                    self.wfile.flush()
                    self.connection.sendfile(fh, 0, size)

        def _headers(self, length: int, ctype: str, cache: str) -> None:
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(length))
            self.send_header("Cache-Control", cache)
            self.send_header("X-Content-Type-Options", "nosniff")
            self.end_headers()

        def _send_bytes(self, data: bytes, ctype: str, cache: str, body: bool) -> None:
            self._headers(len(data), ctype, cache)
            if body:
                self.wfile.write(data)

        def _error(self, code: int, reason: str) -> None:
            try:
                self.send_error(code, explain=reason)
            except OSError:
                self.close_connection = True

        def log_message(self, *args):  # quiet: the harness reports what matters
            pass

    return Handler


def app_mounts(bundle: Path, dist: Path) -> dict:
    """The browser app (web/app) with the models of a dist folder under /models/."""
    import json

    from wsd.paths import web_dir

    def listing() -> bytes:
        names = sorted(p.parent.name for p in Path(dist).glob("*/manifest.json"))
        return json.dumps({"models": names}).encode()

    return {
        "/": web_dir() / "app",
        "/lib/": web_dir() / "lib",
        "/tvmjs.bundle.js": bundle,
        "/models/index.json": listing,
        "/models/": Path(dist),
    }


@contextmanager
def serve(mounts: dict, host: str = "127.0.0.1", port: int = 0):
    """Serve `mounts` on host:ephemeral-port for the duration of the block; yields the base URL."""
    server = http.server.ThreadingHTTPServer((host, port), _handler(mounts))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
