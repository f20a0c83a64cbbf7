"""Publishing and serving a full-size dist: what the copy costs, and a bounded load test.

    python benchmarks/bench_serve.py                  # sd15 (4 GB of random weights), built if needed
    python benchmarks/bench_serve.py --model sd15-tiny --workers 16

Prints: the warm `wsd build` (cache hit) with its publish ("copy") phase, a second publish of
the cache entry alone, then `wsd serve`'s server under many concurrent fetches of every file
of the dist (as a page does): every response is checked complete and byte-exact against the
manifest, and throughput is printed. The client hashes as it reads, so memory stays small.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def fetch(host: str, port: int, path: str) -> tuple[int, int, str]:
    """(status, bytes read, sha256 hex) of one GET, read in 1 MiB blocks."""
    conn = http.client.HTTPConnection(host, port, timeout=300)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        digest, total = hashlib.sha256(), 0
        while block := resp.read(1 << 20):
            digest.update(block)
            total += len(block)
        length = int(resp.headers.get("Content-Length", -1))
        return resp.status if length == total else -1, total, digest.hexdigest()
    finally:
        conn.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="sd15")
    parser.add_argument("--workers", type=int, default=12, help="concurrent connections")
    parser.add_argument("--rounds", type=int, default=2, help="times every file is fetched")
    args = parser.parse_args()

    from wsd import cache
    from wsd.build import BuildOptions, build
    from wsd.host.server import serve

    with tempfile.TemporaryDirectory(prefix="wsd-bench-serve-") as tmp:
        out = Path(tmp)
        argv = [sys.executable, "-m", "wsd", "build", "--model", args.model, "--random-init", "--quiet"]
        subprocess.run([*argv, "--out", str(out / "first")], check=True, stdout=subprocess.DEVNULL)  # cold or cached
        t0 = time.perf_counter()
        result = build(BuildOptions(args.model, random_init=True), out / "dist", echo=lambda *_: None, progress=False)
        warm = time.perf_counter() - t0
        manifest = result.manifest
        total = sum(f["size"] for f in manifest["files"].values())
        t0 = time.perf_counter()
        cache.publish(result.entry, out / "again" / args.model)
        publish_s = time.perf_counter() - t0

        names = sorted(manifest["files"])
        jobs = [name for _ in range(args.rounds) for name in names]
        with serve({"/models/": out / "dist"}) as url:
            host, port = url.removeprefix("http://").split(":")
            t0 = time.perf_counter()
            with ThreadPoolExecutor(args.workers) as pool:
                results = list(pool.map(lambda n: (n, *fetch(host, int(port), f"/models/{args.model}/{n}")), jobs))
            wall = time.perf_counter() - t0
    bad = [n for n, status, size, sha in results if status != 200 or sha != manifest["files"][n]["sha256"]]
    moved = sum(size for _, _, size, _ in results)
    print(f"model            {args.model}: {len(names)} files, {total / 2**30:.2f} GiB")
    print(f"warm build       {warm:6.1f} s (publish phase {result.times.get('copy', 0):.1f} s)")
    print(f"publish alone    {publish_s:6.1f} s ({total / 2**30 / max(publish_s, 1e-9):.2f} GiB/s, private copy)")
    print(
        f"load test        {len(jobs)} fetches on {args.workers} connections: {wall:.1f} s, "
        f"{moved / 2**30 / wall:.2f} GiB/s, {len(jobs) - len(bad)}/{len(jobs)} complete and byte-exact"
    )
    if bad:
        print(f"FAILED: {bad[:5]}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
