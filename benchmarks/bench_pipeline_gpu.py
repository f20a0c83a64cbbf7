"""A whole pipeline on a real GPU: a `wsd build` over WebGPU (Dawn for Node) beside diffusers' own
pipeline in PyTorch on the same GPU, the same random weights, noise, prompt and sampler.

    python benchmarks/bench_pipeline_gpu.py --dist DIST [--steps 20] [--out DIR]

DIST is any family's `wsd build --random-init` webgpu build (SD 1.5, SDXL); its shards are made
from its seed here when they did not travel (wsd/refill.py). Prints and writes: the model's open
time, the generation's wall time with its text, median step and decode times on WebGPU; the same
pipeline in PyTorch eager fp32 with TF32 off (WebGPU's fp32 arithmetic) and in fp16, the ratios;
the WebGPU image's PSNR against each, and PyTorch fp16's own against fp32 (all PNGs are written
beside the JSON). Run by scripts/gpu/run.sh (`pipeline:NAME`).
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

PROMPT = "a photo of an astronaut riding a horse on mars"


def torch_pipeline(
    folder, scheduler: str, noise: np.ndarray, steps: int, guidance: float, size: int, device="cuda", dtype="float32"
):
    """diffusers' pipeline class for the folder on `device` in `dtype` (fp32 without TF32), with
    the sampler the gate's reference makes (conformance/reference: diffusers only): (seconds, pixels)."""
    import torch

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    from conformance.reference import ReferenceModel

    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    pipe = ReferenceModel(folder, size).with_sampler(scheduler).to(device, getattr(torch, dtype))
    pipe.set_progress_bar_config(disable=True)

    def once(n):
        sync()
        t0 = time.perf_counter()
        with torch.inference_mode():
            image = pipe(
                PROMPT,
                num_inference_steps=n,
                guidance_scale=guidance,
                latents=torch.from_numpy(noise).to(device, getattr(torch, dtype)),  # diffusers keeps their dtype
                height=size,
                width=size,
                output_type="np",
            ).images[0]
        sync()
        return time.perf_counter() - t0, (image * 255.0).round()

    once(2)  # warm-up: cuDNN picks its algorithms
    return once(steps)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dist", type=Path, required=True)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--torch-device", default="cuda", help="cpu: a check of this script where there is no GPU")
    args = ap.parse_args(argv)

    import torch

    if args.torch_device == "cuda" and not torch.cuda.is_available():
        print("bench_pipeline_gpu: no CUDA device here; run it on a GPU machine (scripts/gpu/run.sh)")
        return 2
    from PIL import Image

    from conformance.metrics import compare
    from conformance.stages import page_noise
    from wsd import versions
    from wsd.build import random_folder
    from wsd.host.dawn import DawnHost
    from wsd.host.modules import encode, image_of, open_phases
    from wsd.refill import seeded_dist
    from wsd.webrt import runtime_bundle

    dist = args.dist
    built, spec = seeded_dist(dist)
    opts = built["build_options"]
    size, scheduler = built["image_size"], built["default_scheduler"]
    guidance = built["generation"]["default_guidance"]
    shape = built["latent_shape"]
    noise = page_noise(1, int(np.prod(shape))).reshape(shape).astype("float32")
    results: dict = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "model": built["model"],
        "image_size": size,
        "dtype": built["dtype"],
        "steps": args.steps,
        "scheduler": scheduler,
        "gpu": torch.cuda.get_device_name() if args.torch_device == "cuda" else "cpu",
        "versions": {**versions.collect(), "torch_here": torch.__version__},
        "build_versions": built.get("versions"),
    }

    with DawnHost(runtime_bundle(), timeout_s=900) as host:
        runner = host.shared_runner()
        t0 = time.perf_counter()
        opened = runner.call("open", {"url": host.mount(dist)}, timeout_s=900)
        results["adapter"] = {k: opened["adapter"].get(k) for k in ("vendor", "architecture", "device", "description")}
        results["webgpu_open_s"] = round(time.perf_counter() - t0, 1)
        # the page's own split of it (web/lib/session.js): fetch and instantiate, pipelines, weights
        results["webgpu_open_phases_ms"] = open_phases(opened)
        options = {"prompt": PROMPT, "steps": args.steps, "guidance": guidance, "scheduler": scheduler}
        options["noise"] = encode(noise)
        got = runner.call("generate", options, timeout_s=900)
    t = got["timings"]
    results["webgpu_s"] = round(t["wall_ms"] / 1000, 2)
    results["webgpu_text_ms"] = round(t.get("text_ms", 0), 1)
    results["webgpu_step_ms_median"] = round(statistics.median(t["steps_ms"]), 1)
    results["webgpu_decode_ms"] = round(t.get("decode_ms", 0), 1)
    webgpu = image_of(got)
    del got

    folder = random_folder(spec, opts["seed"])
    torch_s, want = torch_pipeline(folder, scheduler, noise, args.steps, guidance, size, args.torch_device)
    results["torch_fp32_no_tf32_s"] = round(torch_s, 2)
    results["ratio_vs_fp32_no_tf32"] = round(torch_s / results["webgpu_s"], 3)
    results["image_vs_torch"] = compare(want, webgpu.astype(np.float64))
    if args.torch_device == "cuda":  # fp16 convs are CUDA's: the CPU check stays fp32
        torch.cuda.empty_cache()
        half_s, half = torch_pipeline(folder, scheduler, noise, args.steps, guidance, size, "cuda", "float16")
        results["torch_fp16_s"] = round(half_s, 2)
        results["ratio_vs_fp16"] = round(half_s / results["webgpu_s"], 3)
        results["image_vs_torch_fp16"] = compare(half, webgpu.astype(np.float64))
        results["torch_fp16_vs_fp32"] = compare(want, half)  # PyTorch's own fp16 floor

    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"gpu-{results['date'][:10]}-{built['model']}-{built['dtype']}-pipeline"
    Image.fromarray(webgpu).save(args.out / f"{stem}-webgpu.png")
    Image.fromarray(want.astype(np.uint8)).save(args.out / f"{stem}-torch.png")
    if "torch_fp16_s" in results:
        Image.fromarray(half.astype(np.uint8)).save(args.out / f"{stem}-torch-fp16.png")
    (args.out / f"{stem}.json").write_text(json.dumps(results, indent=1, default=float) + "\n")
    print(json.dumps({k: v for k, v in results.items() if k != "versions"}, indent=1, default=float))
    print(
        f"{built['model']} {size}² {args.steps} steps: WebGPU {results['webgpu_s']} s (step "
        f"{results['webgpu_step_ms_median']} ms, open {results['webgpu_open_s']} s); PyTorch fp32 (TF32 off) "
        f"{results['torch_fp32_no_tf32_s']} s -> {results['ratio_vs_fp32_no_tf32']}x; "
        f"image PSNR {results['image_vs_torch']['psnr']:.1f} dB"
    )
    if "torch_fp16_s" in results:
        print(
            f"PyTorch fp16 {results['torch_fp16_s']} s -> {results['ratio_vs_fp16']}x; image PSNR against it "
            f"{results['image_vs_torch_fp16']['psnr']:.1f} dB (PyTorch fp16 vs fp32: "
            f"{results['torch_fp16_vs_fp32']['psnr']:.1f} dB)"
        )
    print(f"written: {args.out / stem}.json (+ both PNGs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
