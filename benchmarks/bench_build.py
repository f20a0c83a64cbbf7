"""`wsd build` figures: wall time per phase and peak memory, cold (cache ignored) and warm.

    python benchmarks/bench_build.py                      # sd15 (full architecture, random weights)
    python benchmarks/bench_build.py --model sdxl         # SDXL base 1.0's architecture, 1024²
    python benchmarks/bench_build.py --model sd15-tiny

Targets: the full SD 1.5 build <= 5 min and <= 16 GiB peak (issue 5); SDXL <= 10 min cold and
<= 12 GiB (issue 12) on this machine kind. The seeded random folder is made first (its own
time and peak are printed: a user's folder exists already); "cold" rebuilds everything after it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGETS = {"sd15": (300, 16), "sdxl": (600, 12)}  # model -> (cold s, peak GiB)


def child(argv: list[str]) -> tuple[float, float]:
    """Run a command: (wall s, its own peak RSS GiB). wait4 gives this child's rusage alone."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL)  # nosec B603: our own CLI
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{' '.join(argv)} exited {proc.returncode}")
    return time.perf_counter() - t0, usage.ru_maxrss / 2**20


def build_argv(model: str, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "wsd",
        "build",
        "--model",
        model,
        "--random-init",
        "--out",
        str(out),
        "--quiet",
        *extra,
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="sd15")
    parser.add_argument("--max-binding", default="1GiB", help="passed to wsd build (every kernel within one binding)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="wsd-bench-") as tmp:
        out = Path(tmp)
        # The random folder first (cached after the first time), so "cold" times the compiler.
        folder_s, folder_gib = child(build_argv(args.model, out, "--entry", "scale_model_input"))
        extra = ("--max-binding", args.max_binding)
        cold, peak = child(build_argv(args.model, out, "--rebuild", *extra))
        warm, _ = child(build_argv(args.model, out, *extra))
        manifest = json.loads((out / args.model / "manifest.json").read_text())
    files = manifest["files"]
    params = sum(f["size"] for n, f in files.items() if n.startswith("params_shard_"))
    wasm = files[manifest["library"]]["size"]
    wgsl = manifest.get("wgsl") or {}
    limit_s, limit_gib = TARGETS.get(args.model, (None, None))
    target = f"(target <= {limit_s} s)" if limit_s else ""
    print(f"model            {args.model}  (tvm {manifest['versions']['tvm']}, torch {manifest['versions']['torch']})")
    print(f"random folder    {folder_s:7.1f} s, peak {folder_gib:.2f} GiB (made once, then cached)")
    print(f"cold build       {cold:7.1f} s   {target}")
    print(f"peak memory      {peak:7.2f} GiB {f'(target <= {limit_gib} GiB)' if limit_gib else ''}")
    print(f"warm (cached)    {warm:7.1f} s")
    print("phases           " + ", ".join(f"{k} {v:.1f}s" for k, v in manifest["timings_s"]))
    print(f"sizes            {manifest['library']} {wasm / 2**20:.1f} MiB, params {params / 2**30:.2f} GiB")
    print(f"largest binding  {manifest['requirements']['limits']['maxStorageBufferBindingSize'] / 2**30:.3f} GiB")
    print(f"WGSL             {wgsl.get('shaders')} shaders, {wgsl.get('not_validated', 0)} not validated")


if __name__ == "__main__":
    main()
