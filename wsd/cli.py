"""The `wsd` command line."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from wsd import cliargs
from wsd.cliargs import UsageError
from wsd.errors import WsdError

SMOKE_TOLERANCE = 1e-5  # fp32 end to end on WebGPU; what the foundation promises


def _cmd_toolchain(args) -> int:
    from wsd import toolchain
    from wsd.webrt import kit, sources

    toolchain.ensure(install=not args.no_install)
    if args.prefetch:
        from wsd import prefetch

        print(f"{'prefetch':<11} Dawn for Node and the web runtime kit, in the background (log: {prefetch.start()})")
    elif not args.no_install:
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


def _size(text: str) -> int:
    from wsd.requirements import parse_size

    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _cmd_build(args) -> int:
    from wsd.build import BuildOptions, build

    opts = BuildOptions(
        model=args.model,
        weights=args.weights,
        random_init=args.random_init,
        seed=args.seed,
        dtype=args.dtype,
        target=args.target,
        tune_db=args.tune_db,
        validate_pipelines=args.validate_pipelines,
        entries=tuple(args.entry or ()),
        inject=tuple(args.inject or ()),
        image_size=args.image_size,
        name=args.name,
        allow_fallback=args.allow_fallback,
        max_binding=args.max_binding,
        subgroup_matrix=args.subgroup_matrix,
        split_k=args.split_k,
        fused_attention=args.fused_attention,
        cse=args.cse,
        matmul_tile=args.matmul_tile,
        matmul_unroll=args.matmul_unroll,
    )
    result = build(opts, Path(args.out), progress=not args.quiet, force=args.rebuild)
    files = result.manifest["files"]
    total = sum(f["size"] for f in files.values())
    wasm = files.get(result.manifest["library"], {}).get("size", 0)
    shards = sum(f["size"] for n, f in files.items() if n.startswith("params_shard_"))
    timings = result.manifest["timings_s"]
    wgsl = result.manifest.get("wgsl") or {}
    print(f"{result.manifest['model']} -> {result.out}  ({'cached' if result.cached else 'built'})")
    print(
        f"  sizes: {result.manifest['library']} {wasm / 2**20:.1f} MiB, params {shards / 2**20:.1f} MiB, "
        f"{len(files)} files, {total / 2**20:.1f} MiB in all"
    )
    print("  build times: " + ", ".join(f"{k} {v:.1f}s" for k, v in timings))
    if result.cached:
        print(f"  (this run: {', '.join(f'{k} {v:.1f}s' for k, v in result.times.items())})")
    if wgsl:
        front = wgsl.get("front_end_only", 0)
        checked = wgsl["shaders"] - wgsl.get("not_validated", 0) - front
        print(
            f"  WGSL: {checked} of {wgsl['shaders']} shaders valid on {wgsl['adapter'].get('vendor')}/"
            f"{wgsl['adapter'].get('architecture')}"
            + (" (pipelines created)" if wgsl.get("pipelines") else "")
            + (f", {front} valid in Dawn's front end (its null adapter: features this one lacks)" if front else "")
        )
        if swaps := wgsl.get("replacements"):
            print("  WGSL the page may swap in, valid: " + ", ".join(f"{p} {n}" for p, n in sorted(swaps.items())))
        if wgsl.get("not_validated"):
            print(
                f"  WARNING: {wgsl['not_validated']} shaders not validated: {'; '.join(wgsl['not_validated_reason'])}",
                file=sys.stderr,
            )
    return 0


def _cmd_verify(args) -> int:
    from wsd import manifest

    problems = manifest.verify(Path(args.dist))
    for problem in problems:
        print(f"{args.dist}: {problem}", file=sys.stderr)
    if problems:
        return 1
    print(f"{args.dist}: {len(manifest.load(Path(args.dist))['files'])} files match the manifest")
    return 0


def _cmd_cache(args) -> int:
    import datetime

    from wsd import cache_size
    from wsd.paths import cache_root

    if args.action == "prune":
        limit = args.max
        evicted = cache_size.prune(limit)
        print(f"cache: evicted {len(evicted)} entr{'y' if len(evicted) == 1 else 'ies'}")
    found = cache_size.entries()
    total = sum(e.bytes for e in found)
    if args.action == "list":
        for e in found:
            when = datetime.datetime.fromtimestamp(e.last_used).strftime("%Y-%m-%d %H:%M")
            kept = "" if e.evictable else "  (toolchain: kept)"
            print(f"{e.bytes / 2**20:10.1f} MiB  {when}  {e.kind}/{e.key}{kept}")
    cap = cache_size.cap()
    capped = f"{cap / 2**30:.1f} GiB cap ({cache_size.ENV})" if cap else f"no cap ({cache_size.ENV}=0)"
    print(f"{cache_root()}: {len(found)} entries, {total / 2**30:.2f} GiB; {capped}")
    return 0


def _cmd_coverage(args) -> int:
    from wsd import coverage, models
    from wsd.build import random_folder
    from wsd.entries import entries_for
    from wsd.models.folder import load

    spec = models.get(args.model)
    folder = Path(args.weights) if args.weights else random_folder(spec, 0)
    data = coverage.report(load(spec, folder), entries_for(spec))
    coverage.write(Path(args.report), data)
    print(coverage.table(data))
    print(f"written to {args.report}")
    return 1 if any(info["unsupported"] for info in data.values()) else 0


def _cmd_serve(args) -> int:
    from wsd.app import serve_forever

    try:
        serve_forever(Path(args.dist), args.host, args.port)
    except OSError as exc:  # taken port, unknown host: the socket's reason, not a traceback
        raise UsageError(
            "--host/--port", f"{args.host}:{args.port}", f"cannot listen there ({exc.strerror or exc})"
        ) from None
    return 0


def _cmd_generate(args) -> int:
    from wsd.app import check_settings, generate, generate_on_dawn, lora_setting

    settings = {
        "prompt": args.prompt,
        "negative": args.negative,
        "steps": args.steps,
        "seed": args.seed,
        "guidance": args.guidance,
        "scheduler": args.scheduler,
        "init_image": args.init_image,
        "strength": args.strength,
        "mask": args.mask,
        "lora": lora_setting(args.lora) if args.lora else None,
    }
    for flag, value in (("--strength", args.strength), ("--mask", args.mask)):
        if value is not None and not args.init_image:
            raise UsageError(flag, value, "needs --init-image (the picture to start from)")
    cliargs.writable_file("--out", Path(args.out))
    check_settings(Path(args.dist), args.model, settings)  # before a browser starts: the page's own rules
    run = generate_on_dawn if args.backend == "dawn" else generate
    result = run(Path(args.dist), args.model, settings, Path(args.out), timeout_s=args.timeout)
    t = result["timings"]
    print(f"saved {result['out']} ({result['width']}x{result['height']}) in {t['total_ms'] / 1000:.1f} s")
    if "adapter" in result:
        a, steps = result["adapter"], sorted(t.get("steps_ms") or [0])
        where = f"{a.get('vendor')} {a.get('device') or a.get('architecture') or ''}"
        print(
            f"on {where}: model open {t['open_ms'] / 1000:.1f} s, "
            f"generation {t['wall_ms'] / 1000:.2f} s (text {t.get('text_ms', 0):.0f} ms, {len(steps)} steps "
            f"median {steps[len(steps) // 2]:.0f} ms, decode {t.get('decode_ms', 0):.0f} ms)"
        )
    if result["tokens"]["truncated"]:
        print(f"note: the prompt was cut to {result['tokens']['limit']} tokens")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = cliargs.parser("wsd", "Compile Stable Diffusion for WebGPU and prove it.")
    sub = cliargs.subparsers(parser)
    p = sub.add_parser("toolchain", help="find (and as root on Debian, install) chromium, emscripten, node")
    p.add_argument("--no-install", action="store_true", help="only report; never install")
    p.add_argument(
        "--prefetch",
        action="store_true",
        help="then build Dawn for Node and the web runtime kit into the cache in the background",
    )
    p.set_defaults(func=_cmd_toolchain)
    p = sub.add_parser("webrt", help="build or reuse the cached tvmjs web runtime kit")
    p.add_argument("--rebuild", action="store_true", help="rebuild even if the cache entry is valid")
    p.set_defaults(func=_cmd_webrt)
    p = sub.add_parser("smoke", help="compile a small module to WebGPU, run it in headless Chrome, compare")
    p.add_argument("--report", default="reports/smoke.json")
    p.set_defaults(func=_cmd_smoke)
    p = sub.add_parser("build", help="compile a model from a diffusers folder into dist/<model>/")
    p.add_argument(
        "--model",
        help="a preset (sd15, sd15-tiny, sdxl, sdxl-tiny) for --random-init; with --weights the family "
        "(default: model_index.json)",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--weights", help="a local diffusers folder (unet/, vae/, text_encoder/, tokenizer/, scheduler/)")
    src.add_argument("--random-init", action="store_true", help="seeded random weights, written as a diffusers folder")
    p.add_argument("--seed", type=cliargs.whole, default=0)
    p.add_argument("--dtype", default="float32", help="float32 or float16")
    p.add_argument("--target", default="webgpu", help="webgpu (a .wasm for the browser) or llvm (native CPU)")
    p.add_argument("--out", default="dist")
    p.add_argument(
        "--image-size",
        type=cliargs.positive_int,
        help="pixels per side (default: the UNet's sample_size x the VAE scale)",
    )
    p.add_argument("--name", help="the dist folder's name (default: the preset's, or the weights folder's name)")
    p.add_argument("--tune-db", help="a MetaSchedule database folder to take tuned kernels from")
    p.add_argument(
        "--allow-fallback",
        action="store_true",
        help="let dlight's Fallback schedule large reductions (slow) instead of failing the build",
    )
    p.add_argument("--validate-pipelines", action="store_true", help="also create every compute pipeline in Dawn")
    p.add_argument(
        "--subgroup-matrix",
        action="store_true",
        help="convs and matmuls as GEMMs that run on tensor cores where the device has subgroup matrices "
        "(Dawn's chromium-experimental-subgroup-matrix; fp16 builds) and as register-tiled WGSL elsewhere "
        "(fp32 builds: tiled everywhere)",
    )
    p.add_argument(
        "--max-binding",
        type=_size,
        help="fail, naming the kernel, if a kernel binds a buffer over this size (e.g. 1GiB, a device's "
        "maxStorageBufferBindingSize)",
    )
    p.add_argument("--entry", action="append", help="build only this entry point (repeatable)")
    tuning = p.add_argument_group("comparison builds", "schedule knobs for benchmarks on a GPU (docs/gpu.md)")
    tuning.add_argument("--no-split-k", dest="split_k", action="store_false", help="convs keep their whole K")
    tuning.add_argument(
        "--fused-attention",
        action="store_true",
        help="with --subgroup-matrix in fp16: attention as one tensor-core kernel (slower on an H100 so far)",
    )
    tuning.add_argument(
        "--cse",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="repeated work on one value done once (on by default: 1,034 -> 981 UNet dispatches on an H100)",
    )
    tuning.add_argument("--matmul-tile", metavar="RxC", help="one matmul tile for every kernel (e.g. 64x64)")
    tuning.add_argument("--matmul-unroll", type=cliargs.whole, metavar="N", help="dlight's k-loop unroll")
    p.add_argument(
        "--inject",
        action="append",
        metavar="FAULT",
        help="inject a compiler fault, e.g. dropped-bias@clip (harness self-test)",
    )
    p.add_argument("--rebuild", action="store_true", help="ignore the build cache")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_build)
    p = sub.add_parser("verify", help="check a built folder against its manifest")
    p.add_argument("dist", help="a dist/<model> folder")
    p.set_defaults(func=_cmd_verify)
    p = sub.add_parser("cache", help="the build cache: list its entries, its size, prune it to the cap")
    p.add_argument("action", choices=("list", "size", "prune"))
    p.add_argument("--max", type=_size, help="prune to this size instead of the cap (e.g. 10GiB)")
    p.set_defaults(func=_cmd_cache)
    p = sub.add_parser("coverage", help="the ATen ops each entry point uses and which TVM's importer converts")
    p.add_argument("--model", default="sd15-tiny")
    p.add_argument("--weights", help="a diffusers folder (default: the seeded random one)")
    p.add_argument("--report", default="reports/importer_coverage.json")
    p.set_defaults(func=_cmd_coverage)
    p = sub.add_parser("serve", help="serve the browser app and the models of a dist folder")
    p.add_argument("dist", nargs="?", default="dist")
    p.add_argument("--host", default="127.0.0.1", help="interface (default loopback only)")
    p.add_argument("--port", type=cliargs.port, default=8000)
    p.set_defaults(func=_cmd_serve)
    p = sub.add_parser("generate", help="prompt to PNG through the browser app in headless Chromium, or over Dawn")
    p.add_argument("--model", default="sd15-tiny")
    p.add_argument("--dist", default="dist")
    p.add_argument("--prompt", required=True)
    p.add_argument("--negative", default="")
    p.add_argument("--steps", type=cliargs.whole, default=20, help="one of the dist's step counts for the sampler")
    p.add_argument("--seed", type=cliargs.whole, default=1, help="0 to 4294967295")
    p.add_argument(
        "--guidance", type=cliargs.number, default=None, help="0 to 50 (default: the model's: SD 1.5 7.5, SDXL 5.0)"
    )
    p.add_argument(
        "--scheduler",
        default=None,
        help="default: the model's; one of its manifest's (dpm-solver++, pndm, euler, ddim, euler-a, lcm)",
    )
    p.add_argument(
        "--init-image", default=None, help="img2img: start from this picture (PNG/JPEG of the model's image size)"
    )
    p.add_argument(
        "--strength",
        type=cliargs.number,
        default=None,
        help="0 < s <= 1, how far from the picture (img2img 0.8, inpainting 1)",
    )
    p.add_argument("--mask", default=None, help="inpainting models: white repaints (a picture of the image's size)")
    p.add_argument(
        "--lora",
        default=None,
        metavar="FILE[:SCALE]",
        help="a LoRA .safetensors (diffusers/PEFT or kohya keys) merged at run time, at SCALE 0..2 (default 1)",
    )
    p.add_argument("--out", default="image.png")
    p.add_argument("--timeout", type=cliargs.positive_seconds, default=900)
    p.add_argument(
        "--backend",
        choices=("chromium", "dawn"),
        default="chromium",
        help="chromium: the app page; dawn: the same pipeline in Node over Dawn (a GPU server's real GPU)",
    )
    p.set_defaults(func=_cmd_generate)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (WsdError, UsageError) as exc:
        print(f"wsd {args.command}: error: {exc}", file=sys.stderr)
        return cliargs.USAGE_ERROR


if __name__ == "__main__":
    sys.exit(main())
