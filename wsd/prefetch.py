"""Start the one-time builds a first run needs in the background: Dawn for Node (an npm install,
~70 s of network on a bare machine) and the web runtime kit (~80 s of emcc).

`wsd toolchain --prefetch` starts this detached and returns at once. Both land in the user cache
through `cache.get_or_build`, whose lock makes a test that needs one wait for the build already
under way instead of starting its own; so the network wait overlaps the first tests' CPU work.
Failures here are only logged: whoever needs the part next builds it and reports the error.
"""

from __future__ import annotations

import subprocess  # nosec B404
import sys
import threading
import time
from pathlib import Path

from wsd.paths import cache_root

LOG = "prefetch.log"


def start(parts: tuple[str, ...] = ()) -> Path:
    """Launch `python -m wsd.prefetch [PART...]` in its own session (it outlives the caller); its
    log's path. No parts: all of them."""
    log = cache_root() / LOG
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as out:
        subprocess.Popen(  # nosec B603 (this interpreter, a fixed module, names from PARTS)
            [sys.executable, "-m", "wsd.prefetch", *parts],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return log


def _warm_dawn(echo) -> None:
    from wsd.wgsl import dawn_modules

    dawn_modules(echo=echo)


def _warm_kit(echo) -> None:
    from wsd.webrt import ensure_kit

    ensure_kit(echo=echo)


PARTS = {"dawn": _warm_dawn, "kit": _warm_kit}


def main(argv: list[str] | None = None) -> int:
    """Each part in its own thread (one waits on the network, the other on the CPU)."""
    names = (sys.argv[1:] if argv is None else argv) or list(PARTS)
    failed = []

    def warm(name, fn) -> None:
        began = time.monotonic()
        try:
            fn(lambda line: print(f"[prefetch {name}] {line}", flush=True))
            print(f"[prefetch {name}] ready in {time.monotonic() - began:.1f} s", flush=True)
        except Exception as err:  # logged only: the next user of the part rebuilds and reports it
            failed.append(name)
            print(f"[prefetch {name}] failed: {err}", flush=True)

    threads = [threading.Thread(target=warm, args=(name, PARTS[name])) for name in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
