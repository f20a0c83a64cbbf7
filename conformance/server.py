"""A static file server on 127.0.0.1 for the page and artifacts the browser loads.

Paths are served from a mount table (URL prefix -> folder or file), so artifacts stay
where they were built. Requests outside a mount, or escaping it, get 404.
"""

from __future__ import annotations

import http.server
import mimetypes
import threading
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import unquote, urlsplit

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


def _handler(mounts: dict[str, Path]):
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's naming)
            path = resolve(mounts, self.path)
            if path is None:
                self.send_error(404)
                return
            body = path.read_bytes()
            ctype = MIME.get(path.suffix) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):  # quiet: the harness reports what matters
            pass

    return Handler


@contextmanager
def serve(mounts: dict[str, Path], host: str = "127.0.0.1"):
    """Serve `mounts` on host:ephemeral-port for the duration of the block; yields the base URL."""
    server = http.server.ThreadingHTTPServer((host, 0), _handler(mounts))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
