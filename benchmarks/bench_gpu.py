"""SD 1.5 on a real GPU: the compiled UNet over WebGPU (Dawn for Node) beside PyTorch eager on
the same GPU, in one run. Prints the figures and writes them to benchmarks/results/.

    python benchmarks/bench_gpu.py --dist DIST [--fp16-dist DIST16] [--repeat 10] [--steps 20]

DIST is a `wsd build --model sd15 --random-init` webgpu build (its shards are made from its
seed here when they did not travel: wsd/refill.py). Figures, all medians of `repeat` calls:
the UNet entry (CFG batch 2, 64x64 latents, fp32) on WebGPU; PyTorch eager on the same
weights and inputs in fp32 with TF32 off (the like-for-like arithmetic: WebGPU has no tensor
cores), with TF32, and in fp16; per-kernel GPU time of one WebGPU call (timestamp queries),
joined with each kernel's dlight rule and shapes; one 20-step 512x512 image end to end; and
each entry point's output on the GPU against PyTorch's (fp32, TF32 off). Run by
scripts/gpu/run.sh on a lent GPU machine; on a machine without CUDA it stops with a message.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from wsd.host.modules import GEMM_PATHS  # noqa: E402 (after the checkout is on the path)


def torch_medians(module, inputs, repeat: int) -> dict[str, float]:
    """PyTorch eager per-call medians (ms) in the three arithmetics people compare with."""
    import copy

    import torch

    out = {}
    for label, dtype, tf32 in (
        ("fp32_no_tf32", torch.float32, False),
        ("tf32", torch.float32, True),
        ("fp16", torch.float16, True),
    ):
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
        mod = copy.deepcopy(module).to("cuda", dtype)
        args = [torch.from_numpy(x).to("cuda", dtype if x.dtype == np.float32 else None) for x in inputs]
        times = []
        with torch.inference_mode():
            for i in range(repeat + 2):
                torch.cuda.synchronize()
                t0 = time.perf_counter()
                mod(*args)
                torch.cuda.synchronize()
                if i >= 2:  # two warm-ups (cuDNN picks its algorithms)
                    times.append((time.perf_counter() - t0) * 1000)
        out[label] = statistics.median(times)
        del mod
        torch.cuda.empty_cache()
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    return out


def torch_outputs(module, inputs) -> list[np.ndarray]:
    import torch

    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    mod = module.to("cuda", torch.float32)
    with torch.inference_mode():
        out = mod(*[torch.from_numpy(x).cuda() for x in inputs])
    outs = out if isinstance(out, (tuple, list)) else [out]
    mod.cpu()
    return [o.float().cpu().numpy() for o in outs]


def kernel_table(kernels: list[dict], table: dict) -> list[dict]:
    """Per-kernel GPU time of one call, summed by kernel (slowest first), with its dlight rule and shapes."""
    total: dict[str, dict] = {}
    for k in kernels:
        row = total.setdefault(k["kernel"], {"kernel": k["kernel"], "ms": 0.0, "calls": 0})
        row["ms"] += k["ms"]
        row["calls"] += 1
    rows = sorted(total.values(), key=lambda r: -r["ms"])
    for row in rows:
        info = table.get(row["kernel"], {})
        row["rule"] = info.get("rule")
        row["config"] = info.get("config")
        row["shapes"] = [a["shape"] for a in info.get("args", [])]
    return rows


def rule_totals(kernels: list[dict], table: dict) -> dict[str, float]:
    out: dict[str, float] = {}
    for k in kernels:
        kind = _kind(k["kernel"])
        out[kind] = out.get(kind, 0.0) + k["ms"]
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def _kind(name: str) -> str:
    for kind in ("group_norm", "conv2d", "matmul", "softmax", "layer_norm", "resize", "sgemm", "im2col"):
        if kind in name:
            return kind
    return "other"


def open_once(host_class, bundle, dist: Path, overlap: bool = True) -> dict:
    """One open of the build in a fresh Dawn process: wall seconds and the page's own phases (ms);
    `overlap` False loads the weights after the pipelines instead of beside them."""
    from wsd.host.modules import open_phases

    with host_class(bundle, timeout_s=600) as host:
        t0 = time.perf_counter()
        opened = host.shared_runner().call("open", {"url": host.mount(dist), "overlap": overlap}, timeout_s=600)
        wall = round(time.perf_counter() - t0, 1)
    return {"overlap": overlap, "open_s": wall, "phases_ms": open_phases(opened)}


def open_series(host_class, bundle, dist: Path, opens: int, sequential: bool, cold: bool) -> list[dict]:
    """`opens` opens (each followed by one that loads the weights after the pipelines, with
    `sequential`); with `cold`, the NVIDIA driver's shader disk cache is off for all of them, so
    every open compiles its pipelines as the first one on a machine does."""
    import os
    from unittest import mock

    # read by the driver in the Dawn processes started below; the environment is restored after
    with mock.patch.dict(os.environ, {"__GL_SHADER_DISK_CACHE": "0"} if cold else {}):
        modes = [True, False] if sequential else [True]
        return [open_once(host_class, bundle, dist, overlap) for _ in range(opens) for overlap in modes]


def in_words(phases: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in phases.items())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dist", type=Path, required=True)
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--label", default="", help="a name for this run in the results file")
    ap.add_argument("--flush-every", type=int, default=64, help="submit every N dispatches (web/lib/pacing.js)")
    ap.add_argument(
        "--flush-sweep",
        type=lambda text: [int(v) for v in text.split(",") if v],
        default=[8, 32, 128, 512],
        help="other pacings to time (medians in the results; 0, tvmjs alone, is always timed)",
    )
    ap.add_argument(
        "--opens",
        type=int,
        default=0,
        help="first open the build N times, each in a fresh Dawn process (cold, then the driver's disk cache warm)",
    )
    ap.add_argument(
        "--open-sequential",
        action="store_true",
        help="after each of those opens, one that loads the weights after the pipelines (the order before overlap)",
    )
    ap.add_argument("--cold-opens", action="store_true", help="those opens with the driver's shader disk cache off")
    ap.add_argument(
        "--gemm-path",
        choices=GEMM_PATHS,
        default="auto",
        help="a --subgroup-matrix build's GEMMs: the fastest the device offers, the tiled WGSL, or TVM's kernels",
    )
    args = ap.parse_args(argv)

    import torch

    if not torch.cuda.is_available():
        print("bench_gpu: no CUDA device here; run it on a GPU machine (scripts/gpu/run.sh)")
        return 2
    from conformance.metrics import compare
    from wsd import versions
    from wsd.build import random_folder
    from wsd.entries import entries_for
    from wsd.host.dawn import DawnHost
    from wsd.host.modules import decode, encode, open_phases, open_spec
    from wsd.models.folder import load
    from wsd.refill import seeded_dist
    from wsd.webrt import runtime_bundle

    dist = args.dist
    built, spec = seeded_dist(dist)
    opts = built["build_options"]
    model = load(spec, random_folder(spec, opts["seed"]))
    wrappers = {e.name: e for e in entries_for(spec)}
    rng = np.random.default_rng(0)
    unet_inputs = [
        rng.standard_normal(built["entry_points"]["unet"]["inputs"][0]["shape"]).astype("float32"),
        np.array([981.0], "float32"),
        (rng.standard_normal(built["entry_points"]["unet"]["inputs"][2]["shape"]) * 0.5).astype("float32"),
        np.array([7.5], "float32"),
    ]
    results: dict = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "label": args.label,
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "model": built["model"],
        "image_size": built["image_size"],
        "dtype": built["dtype"],
        "gpu": torch.cuda.get_device_name(),
        "versions": {**versions.collect(), "torch_here": torch.__version__},
        "build_versions": built.get("versions"),  # the TVM that compiled it (not on the GPU machine)
        "schedule_rules": built.get("schedule_rules"),
    }
    unet = wrappers["unet"].wrapper(model)
    print("PyTorch eager on", results["gpu"])
    results["torch_unet_ms"] = torch_medians(unet, unet_inputs, args.repeat)
    reference = {"unet": torch_outputs(unet, unet_inputs)[0]}
    table = json.loads((dist / "kernels.json").read_text())

    results["opens"] = open_series(DawnHost, runtime_bundle(), dist, args.opens, args.open_sequential, args.cold_opens)
    results["opens_cold"] = args.cold_opens
    for i, opened in enumerate(results["opens"]):
        how = "overlapped" if opened["overlap"] else "sequential"
        print(f"open {i + 1} ({how}): {opened['open_s']} s; {in_words(opened['phases_ms'])}")
    with DawnHost(runtime_bundle(), timeout_s=600) as host:
        runner = host.shared_runner()
        t0 = time.perf_counter()
        opened = runner.call("open", open_spec(host.mount(dist), True, args.gemm_path), timeout_s=600)
        results["adapter"] = opened["adapter"]
        results["subgroup_matrix_kernels"] = opened.get("subgroup_matrix_kernels", 0)  # GEMMs on tensor cores
        results["tiled_gemm_kernels"] = opened.get("tiled_gemm_kernels", 0)  # GEMMs tiled, no tensor cores
        results["gemm_path"] = args.gemm_path  # auto: the fastest the device offers
        results["subgroup_matrix_refused"] = opened.get("subgroup_matrix_refused")
        results["open_s"] = round(time.perf_counter() - t0, 1)
        # the page's own split of it (web/lib/session.js): fetch and instantiate, pipelines, weights
        results["open_phases_ms"] = open_phases(opened)
        print(f"open (profiled): {results['open_s']} s; {in_words(results['open_phases_ms'])}")
        wire = [encode(x) for x in unet_inputs]
        # tvmjs alone submits a call's dispatches at its end (the GPU idles while they are recorded);
        # web/lib/pacing.js submits every N passes: both measured here, paced last (the default).
        sweep = {}
        for every in sorted({0, *args.flush_sweep}):
            paced = runner.call("bench", {"entry": "unet", "inputs": wire, "repeat": args.repeat, "flushEvery": every})
            sweep[every] = round(statistics.median(paced["ms"]), 2)
        results["webgpu_unet_ms_by_flush_every"] = sweep
        results["webgpu_unet_ms_unpaced"] = sweep[0]
        bench = runner.call(
            "bench", {"entry": "unet", "inputs": wire, "repeat": args.repeat, "flushEvery": args.flush_every}
        )
        results["flush_every"] = bench.get("flush_every")
        results["webgpu_unet_ms"] = statistics.median(bench["ms"])
        results["webgpu_unet_runs_ms"] = [round(x, 2) for x in bench["ms"]]
        # the CPU's share: a call cannot take less than recording its dispatches
        results["webgpu_unet_record_ms"] = round(statistics.median(bench["record_ms"]), 2)
        if bench["kernels"]:
            results["kernel_gpu_ms_total"] = round(sum(k["ms"] for k in bench["kernels"]), 2)
            results["dispatches"] = len(bench["kernels"])
            results["by_kind_ms"] = {k: round(v, 2) for k, v in rule_totals(bench["kernels"], table).items()}
            rows = kernel_table(bench["kernels"], table)
            results["top_kernels"] = rows[:15]
            # every kernel (ms and calls only): where the many small dispatches go
            results["kernels"] = [
                {"kernel": r["kernel"], "ms": round(r["ms"], 4), "calls": r["calls"], "rule": r["rule"]} for r in rows
            ]

        def run(entry: str, inputs: list[np.ndarray]) -> np.ndarray:
            outs = runner.call("run", {"entry": entry, "inputs": [encode(x) for x in inputs]}, timeout_s=600)
            return decode(outs["outputs"][0])

        got = run("unet", unet_inputs)
        results["unet_vs_torch"] = compare(reference["unet"], got)
        # the other entry points on the GPU against PyTorch's on the same GPU
        results["entries_vs_torch"] = {}
        if "clip" in built["entry_points"]:
            ids = np.zeros(built["entry_points"]["clip"]["inputs"][0]["shape"], "int32")
            ids[0, :4] = [49406, 320, 1125, 49407]
            want = torch_outputs(wrappers["clip"].wrapper(model), [ids])[0]
            results["entries_vs_torch"]["clip"] = compare(want, run("clip", [ids]))
        if "vae" in built["entry_points"]:
            latents = (rng.standard_normal(built["latent_shape"]) * 0.5).astype("float32")
            want = torch_outputs(wrappers["vae"].wrapper(model), [latents])[0]
            results["entries_vs_torch"]["vae"] = compare(want, run("vae", [latents]))
        if not {"clip", "vae", "image_to_rgba", "scheduler_step"} <= set(built["entry_points"]):
            results["image_s"] = None  # a UNet-only build: no image end to end
            return finish(results, built, args)
        prompt = {"prompt": "a photo of an astronaut riding a horse", "steps": args.steps, "guidance": 7.5, "seed": 1}
        t0 = time.perf_counter()
        image = runner.call("generate", prompt, timeout_s=600)
        results["image_wall_s_host"] = round(time.perf_counter() - t0, 2)
        results.update(image_figures(image, ""))
        results["image_steps"] = args.steps
        # the loop as it was: each step waited for before the next is recorded (no overlap)
        synced = runner.call("generate", {**prompt, "syncEachStep": True}, timeout_s=600)
        results.update(image_figures(synced, "_synced"))
        results["image_same_synced"] = synced["rgba"] == image["rgba"]  # overlap changes no value
    return finish(results, built, args)


def image_figures(image: dict, suffix: str) -> dict:
    """A generation's seconds and the page's own phases (text encoder, the steps, VAE decode)."""
    phases = image["timings"]
    steps = phases.get("steps_ms", [])
    return {
        f"image_s{suffix}": round(phases["wall_ms"] / 1000, 2),
        f"image_phases_ms{suffix}": {
            "text": round(phases.get("text_ms", 0.0), 1),
            "steps": round(sum(steps), 1),
            "step_median": round(float(np.median(steps)), 1) if steps else None,
            "decode": round(phases.get("decode_ms", 0.0), 1),
        },
    }


def finish(results: dict, built: dict, args) -> int:
    t = results["torch_unet_ms"]
    results["ratio_vs_fp32_no_tf32"] = round(t["fp32_no_tf32"] / results["webgpu_unet_ms"], 3)
    print(json.dumps({k: v for k, v in results.items() if k not in ("top_kernels", "kernels", "versions")}, indent=1))
    print(f"{'kernel':70} {'ms':>8} {'calls':>5}  rule")
    for row in results.get("top_kernels", []):
        print(f"{row['kernel'][:70]:70} {row['ms']:8.2f} {row['calls']:5d}  {row['rule']} {row.get('config') or ''}")
    print(
        f"UNet per call: WebGPU {results['webgpu_unet_ms']:.1f} ms "
        f"({results.get('webgpu_unet_ms_unpaced', float('nan')):.1f} ms unpaced; "
        f"the CPU records it in {results.get('webgpu_unet_record_ms', float('nan')):.1f} ms); "
        f"PyTorch fp32 (TF32 off) {t['fp32_no_tf32']:.1f} ms, "
        f"TF32 {t['tf32']:.1f} ms, fp16 {t['fp16']:.1f} ms -> {results['ratio_vs_fp32_no_tf32']}x of PyTorch fp32"
    )
    print(f"{args.steps}-step {built['image_size']}² image: {results['image_s']} s (None: the build has no vae)")
    for suffix in ("", "_synced"):
        if phases := results.get(f"image_phases_ms{suffix}"):
            print(
                f"image{suffix} {results[f'image_s{suffix}']} s, of which (ms): "
                + ", ".join(f"{k} {v}" for k, v in phases.items())
            )
    args.out.mkdir(parents=True, exist_ok=True)
    name = (
        f"gpu-{results['date'][:10]}-{built['model']}-{built['dtype']}{('-' + args.label) if args.label else ''}.json"
    )
    (args.out / name).write_text(json.dumps(results, indent=1, default=float) + "\n")
    print(f"written: {args.out / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
