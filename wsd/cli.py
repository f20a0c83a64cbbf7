"""The `wsd` command line."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from wsd.errors import WsdError

SMOKE_TOLERANCE = 1e-5  # fp32 end to end on WebGPU; what the foundation promises


def _cmd_toolchain(args) -> int:
    from wsd import toolchain
    from wsd.webrt import kit, sources

    toolchain.ensure(install=not args.no_install)
    if not args.no_install:
        modules = kit.npm_packages(sources.locate()) / "node_modules"
        count = sum(1 for p in modules.iterdir() if not p.name.startswith("."))
        print(f"{'tvmjs npm':<11} {count} packages  ({modules})")
    return 0


def _cmd_webrt(args) -> int:
    from wsd.webrt import ensure_kit

    kit = ensure_kit(force=args.rebuild)
    print(f"webrt: {kit.dir}")
    print(json.dumps({k: v for k, v in kit.info.items() if k != "shims"}, indent=1))
    return 0


def _cmd_smoke(args) -> int:
    from wsd import smoke

    report = smoke.run(Path(args.report))
    print(smoke.summary_line(report))
    if not report["max_abs"] <= SMOKE_TOLERANCE:  # NaN fails too
        print(f"smoke: FAIL, max_abs {report['max_abs']:.3e} > {SMOKE_TOLERANCE:.0e}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="wsd", description="Compile Stable Diffusion for WebGPU and prove it.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("toolchain", help="find (and as root on Debian, install) chromium, emscripten, node")
    p.add_argument("--no-install", action="store_true", help="only report; never install")
    p.set_defaults(func=_cmd_toolchain)
    p = sub.add_parser("webrt", help="build or reuse the cached tvmjs web runtime kit")
    p.add_argument("--rebuild", action="store_true", help="rebuild even if the cache entry is valid")
    p.set_defaults(func=_cmd_webrt)
    p = sub.add_parser("smoke", help="compile a small module to WebGPU, run it in headless Chrome, compare")
    p.add_argument("--report", default="reports/smoke.json")
    p.set_defaults(func=_cmd_smoke)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except WsdError as exc:
        print(f"wsd {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
