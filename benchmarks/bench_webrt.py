"""Foundation figures: cold runtime build, warm model link, smoke run, toolchain re-check.

    python benchmarks/bench_webrt.py            # all (the cold build takes ~1.5 min on 2 cores)
    python benchmarks/bench_webrt.py --no-cold  # skip the cold build

Targets (issue 2): warm model link <= 30 s; a second `wsd toolchain` run < 5 s.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path


def timed(fn):
    t0 = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - t0


def cold_build_s() -> float:
    """Build the kit into an empty cache (npm packages copied in, so this times emcc + bundling)."""
    from wsd.paths import cache_root
    from wsd.webrt import ensure_kit

    real = cache_root()
    with tempfile.TemporaryDirectory(prefix="wsd-bench-") as tmp:
        if (real / "npm").exists():
            shutil.copytree(real / "npm", Path(tmp) / "npm", symlinks=True)
        os.environ["WSD_CACHE_DIR"] = tmp
        try:
            _, secs = timed(lambda: ensure_kit(echo=lambda _: None))
        finally:
            os.environ.pop("WSD_CACHE_DIR")
    return secs


def warm_link_s(repeats: int = 3) -> list[float]:
    from wsd import smoke
    from wsd.webrt import ensure_kit

    kit = ensure_kit(echo=lambda _: None)
    links = []
    with tempfile.TemporaryDirectory(prefix="wsd-bench-") as tmp:
        for _ in range(repeats):
            _, _, link_s = smoke.build_wasm(smoke.make_module(), smoke.sample_input(), Path(tmp), kit)
            links.append(link_s)
    return links


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--no-cold", action="store_true")
    args = parser.parse_args()

    from wsd import smoke, toolchain

    toolchain.ensure(install=False, echo=lambda _: None)
    _, toolchain_s = timed(lambda: toolchain.ensure(install=False, echo=lambda _: None))
    print(f"toolchain second run     {toolchain_s:8.2f} s   (target < 5)")
    if not args.no_cold:
        print(f"cold runtime kit build   {cold_build_s():8.1f} s")
    links = warm_link_s()
    print(f"warm model link (median) {statistics.median(links):8.2f} s   (target <= 30; runs {links})")
    report = smoke.run(report_path=None, echo=lambda _: None)
    print(f"smoke run (median of 5)  {report['run_ms']:8.1f} ms  on {report['adapter']['architecture']}")
    print(f"smoke build              {report['build_s']:8.2f} s,  pipelines {report['pipelines_ms']:.0f} ms")
    print(f"smoke max_abs            {report['max_abs']:8.1e}")


if __name__ == "__main__":
    main()
