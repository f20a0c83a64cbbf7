"""Warm `tox -e conformance` figures: wall time and where it goes.

    python benchmarks/bench_conformance.py          # runs the gate twice: warm-up, then measured

Target (issue 3): <= 5 min warm on this machine kind (2 cores, SwiftShader). "Warm" means
the build cache and the web runtime kit exist; the page still compiles every GPU pipeline
once per run (SwiftShader has no pipeline cache across browser launches).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from conformance import gate

ROOT = Path(__file__).resolve().parent.parent
SUMMARY = ROOT / "reports" / "conformance" / "summary.json"


def run_gate() -> float:
    argv = [sys.executable, "-m", "pytest", *gate.pytest_args(), "-q", "-p", "no:cacheprovider"]
    t0 = time.perf_counter()
    subprocess.run(argv, cwd=ROOT, check=False, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    print("warm-up run (builds and kit come from the cache after this) ...", flush=True)
    run_gate()
    wall = run_gate()
    body = json.loads(SUMMARY.read_text())
    t = body.get("timings", {})
    print(f"warm tox -e conformance: {wall:.1f} s wall (pytest process), {body['totals']}")
    print(f"  build (compile + link, cache lookups): {t.get('build_s', 0):7.1f} s")
    print(f"  browser: open + compile GPU pipelines:  {t.get('browser_open_s', 0):7.1f} s")
    print(f"  references (torch/diffusers, CPU):      {t.get('reference_s', 0):7.1f} s")
    print(f"  candidates (WebGPU + native runs):      {t.get('candidate_s', 0):7.1f} s")
    rest = wall - sum(t.get(k, 0) for k in ("build_s", "browser_open_s", "reference_s", "candidate_s"))
    print(f"  the rest (imports, model load, reports): {rest:7.1f} s")
    per_backend: dict[str, float] = {}
    for row in body["stages"]:
        per_backend[row["backend"]] = per_backend.get(row["backend"], 0) + (row["ms"].get("candidate") or 0) / 1000
    print("  candidate time per backend: " + ", ".join(f"{k} {v:.1f} s" for k, v in per_backend.items()))
    slowest = sorted(body["stages"], key=lambda r: -(r["ms"].get("candidate") or 0))[:3]
    print(
        "  slowest cases: "
        + ", ".join(f"{r['stage']}[{r['backend']}] {r['ms']['candidate'] / 1000:.1f} s" for r in slowest)
    )


if __name__ == "__main__":
    main()
