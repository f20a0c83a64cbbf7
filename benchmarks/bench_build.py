"""`wsd build` figures: wall time per phase and peak memory, cold (cache ignored) and warm.

    python benchmarks/bench_build.py                      # sd15 (full architecture, random weights)
    python benchmarks/bench_build.py --model sd15-tiny

Targets (issue 5): the full SD 1.5 build <= 5 min and <= 16 GiB peak on this machine kind.
The random weights folder is made once and cached; "cold" rebuilds everything after it.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run_build(model: str, out: Path, rebuild: bool) -> tuple[float, float, dict]:
    """One `wsd build` in a child process: (wall s, child peak RSS GiB, manifest)."""
    argv = [sys.executable, "-m", "wsd", "build", "--model", model, "--random-init", "--out", str(out), "--quiet"]
    if rebuild:
        argv.append("--rebuild")
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    subprocess.run(argv, check=True)
    wall = time.perf_counter() - t0
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    manifest = json.loads((out / model / "manifest.json").read_text())
    # ru_maxrss of children is the largest child so far; report it only if this run raised it.
    return wall, max(peak_kib, before) / 2**20, manifest


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="sd15")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="wsd-bench-") as tmp:
        out = Path(tmp)
        # Make sure the random folder exists, so "cold" times the compiler, not weight init.
        subprocess.run(
            [
                sys.executable,
                "-m",
                "wsd",
                "build",
                "--model",
                args.model,
                "--random-init",
                "--out",
                str(out),
                "--quiet",
                "--entry",
                "scale_model_input",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        cold, peak, manifest = run_build(args.model, out, rebuild=True)
        warm, _, _ = run_build(args.model, out, rebuild=False)
    files = manifest["files"]
    params = sum(f["size"] for n, f in files.items() if n.startswith("params_shard_"))
    wasm = files[manifest["library"]]["size"]
    wgsl = manifest.get("wgsl") or {}
    print(f"model            {args.model}  (tvm {manifest['versions']['tvm']}, torch {manifest['versions']['torch']})")
    print(f"cold build       {cold:7.1f} s   (target <= 300 s for sd15)")
    print(f"peak memory      {peak:7.2f} GiB (target <= 16 GiB)")
    print(f"warm (cached)    {warm:7.1f} s")
    print("phases           " + ", ".join(f"{k} {v:.1f}s" for k, v in manifest["timings_s"]))
    print(f"sizes            {manifest['library']} {wasm / 2**20:.1f} MiB, params {params / 2**30:.2f} GiB")
    print(f"WGSL             {wgsl.get('shaders')} shaders, {wgsl.get('not_validated', 0)} not validated")


if __name__ == "__main__":
    main()
