"""The offline shell (web/app/sw.js) caches every module the page imports: a module left out
makes an offline reload hang on the import (it did when lib/validate.js was added)."""

from __future__ import annotations

import re

from wsd.paths import web_dir


def test_every_lib_module_is_in_the_offline_shell():
    listed = set(re.findall(r'"(/lib/[^"]+\.js)"', (web_dir() / "app" / "sw.js").read_text()))
    modules = {f"/lib/{p.name}" for p in (web_dir() / "lib").glob("*.js")}
    assert modules <= listed, sorted(modules - listed)
