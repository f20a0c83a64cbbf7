"""The build cache's cap under a loop of real builds of distinct configs: the cache's size after
each build, against the cap (wsd/cache_size.py). Prints one line per build and writes JSON.

    python benchmarks/bench_cache_cap.py [--builds 6] [--cap 40MiB] [--out FILE]

Each build is `wsd build --model sd15-tiny --random-init --target llvm --seed N` into a private
cache folder (so every build is cold and the figures are this loop's alone).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    from wsd import cache_size
    from wsd.requirements import parse_size

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--builds", type=int, default=6)
    ap.add_argument("--cap", default="40MiB")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    cap = parse_size(args.cap)
    work = Path(tempfile.mkdtemp(prefix="wsd-cache-cap-"))
    env = {**os.environ, "WSD_CACHE_DIR": str(work / "cache"), cache_size.ENV: args.cap}
    rows = []
    for seed in range(args.builds):
        t0 = time.perf_counter()
        cmd = [sys.executable, "-m", "wsd", "build", "--model", "sd15-tiny", "--random-init", "--target", "llvm"]
        cmd += ["--seed", str(seed), "--out", str(work / "out"), "--quiet"]
        subprocess.run(cmd, check=True, env=env, cwd=ROOT, stdout=subprocess.DEVNULL)
        found = cache_size.entries(work / "cache")
        size = sum(e.bytes for e in found)
        rows.append(
            {"build": seed, "cache_bytes": size, "entries": len(found), "s": round(time.perf_counter() - t0, 1)}
        )
        print(
            f"build {seed}: cache {size / 2**20:.1f} MiB in {len(found)} entries (cap {cap / 2**20:.0f} MiB), "
            f"{rows[-1]['s']} s",
            flush=True,
        )
    body = {
        "date": datetime.date.today().isoformat(),
        "command": "python benchmarks/bench_cache_cap.py " + " ".join(argv or sys.argv[1:]),
        "cap_bytes": cap,
        "max_cache_bytes": max(r["cache_bytes"] for r in rows),
        "held": all(r["cache_bytes"] <= cap for r in rows),
        "builds": rows,
    }
    print(
        f"max {body['max_cache_bytes'] / 2**20:.1f} MiB against a {cap / 2**20:.0f} MiB cap: "
        f"{'held' if body['held'] else 'EXCEEDED'}"
    )
    if args.out:
        args.out.write_text(json.dumps(body, indent=1) + "\n")
    return 0 if body["held"] else 1


if __name__ == "__main__":
    sys.exit(main())
