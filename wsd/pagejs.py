"""A function of the page's own modules (web/lib/*.js) called from Python under node.

Where the CLI or the harness must do exactly what the page does (its seeded noise, its option
checks), it runs the page's code instead of a Python copy of it: one copy of each rule.
"""

from __future__ import annotations

import json
import subprocess  # nosec B404: node runs the page's own modules
from pathlib import Path

from wsd.errors import WsdError


class PageError(WsdError):
    """The page's function threw: its message, and the WsdError detail it carried (if any)."""

    def __init__(self, message: str, detail: dict | None):
        super().__init__(message)
        self.detail = detail or {}


def call(module: str, function: str, *args, timeout_s: float = 60):
    """`function(...args)` exported by web/lib/<module>; arguments and result travel as JSON
    (typed arrays as lists)."""
    from wsd import toolchain
    from wsd.paths import web_dir

    url = (Path(web_dir()) / "lib" / module).as_uri()
    script = (
        f"import {{ {function} as fn }} from {json.dumps(url)};"
        "import { readFileSync } from 'node:fs';"
        "const args = JSON.parse(readFileSync(0, 'utf8'));"
        "let out;"
        "try { out = { value: fn(...args) }; } catch (e) { out = { error: e.message, detail: e.detail ?? null }; }"
        "process.stdout.write(JSON.stringify(out, (k, v) => (ArrayBuffer.isView(v) ? Array.from(v) : v)));"
    )
    proc = subprocess.run(  # nosec B603: node on the page's own module, no shell
        [toolchain.find("node"), "--input-type=module", "-e", script],
        input=json.dumps(list(args), allow_nan=False),
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise WsdError(f"node could not run {module}'s {function}: {last}")
    out = json.loads(proc.stdout)
    if "error" in out:
        raise PageError(out["error"], out.get("detail"))
    return out.get("value")
