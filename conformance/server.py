"""A static file server on 127.0.0.1 for the page and artifacts the browser loads.

Paths are served from a mount table (URL prefix -> folder or file), so artifacts stay
where they were built. Requests outside a mount, or escaping it, get 404.
"""

from __future__ import annotations

import http.server
import mimetypes
import threading
from contextlib import contextmanager
from functools import lru_cache
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


def resolve(mounts: dict[str, Path], url_path: str) -> Path | None:
    """The file a URL path names, or None if it is outside every mount."""
    path = unquote(urlsplit(url_path).path)
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
        candidate = (target / rel).resolve()
        if candidate.is_relative_to(target) and candidate.is_file():
            return candidate
    return None


IMMUTABLE = "public, max-age=31536000, immutable"


@lru_cache(maxsize=4096)
def _sha256(path: Path, mtime_ns: int, size: int) -> str:
    return file_digest(path).hex()


def cache_control(path: Path, query: str) -> str:
    """Versioned requests (`?v=<sha256 prefix>`, lib/integrity.js's keys) whose version is the
    file's own may be cached forever; anything else must be revalidated."""
    version = parse_qs(query).get("v", [""])[0]
    if len(version) >= 16:
        stat = path.stat()
        if _sha256(path, stat.st_mtime_ns, stat.st_size).startswith(version):
            return IMMUTABLE
    return "no-cache"


def _handler(mounts: dict):
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's naming)
            url = urlsplit(self.path)
            generated = mounts.get(unquote(url.path))
            if callable(generated):  # a generated document (a model listing)
                self._send(generated(), "application/json", "no-cache")
                return
            path = resolve(mounts, self.path)
            if path is None:
                self.send_error(404)
                return
            ctype = MIME.get(path.suffix) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            self._send(path.read_bytes(), ctype, cache_control(path, url.query))

        def _send(self, body: bytes, ctype: str, cache: str) -> None:
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", cache)
            self.send_header("X-Content-Type-Options", "nosniff")
            self.end_headers()
            self.wfile.write(body)

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
