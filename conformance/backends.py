"""Where a candidate runs: `webgpu` (the page in headless Chromium) or `native` (the same
Relax module built for llvm, on the CPU). Both answer the same calls, so every stage runs
unchanged on either; failing on webgpu only points at WebGPU codegen or the runtime,
failing on both at capture or the compiler.
"""

from __future__ import annotations

import json
import subprocess  # nosec B404: node runs the page's own tokenizer
import time
from pathlib import Path

import numpy as np

from wsd import schedulers, toolchain
from wsd.host.modules import decode, encode, image_of, open_spec, rgb_of
from wsd.paths import web_dir

# a start image's settings (NativeBackend.start_latents) as the page's generate() options name them
START_OPTIONS = {
    "init_image": "initImage",
    "mask_image": "maskImage",
    "posterior_noise": "posteriorNoise",
    "masked_noise": "maskedNoise",
}


class Backend:
    name = "?"
    dist: Path

    def run(self, entry: str, inputs: list[np.ndarray]) -> tuple[list[np.ndarray], float]:
        raise NotImplementedError

    def table(self, scheduler: str, steps: int) -> dict:
        from wsd.errors import WsdError
        from wsd.schedulers import check_table

        path = self.dist / "schedulers" / f"{scheduler}-{steps}.json"
        try:
            table = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise WsdError(f"{path}: unreadable sampler table ({exc})") from None
        return check_table(table, str(path))

    def set_lora(self, path: Path | None, scale: float = 1.0) -> int:
        """A LoRA file merged into the open model's weights at `scale` (None: the build's own);
        the number of weights it changed."""
        raise NotImplementedError

    def step_fn(self):
        """The compiled sampler step as LoopState wants it."""

        def step(sample, eps, h1, h2, h3, cur, coeffs):
            outs, _ = self.run("scheduler_step", [sample, eps, h1, h2, h3, cur, coeffs])
            return outs[0], outs[1]

        return step


class NativeBackend(Backend):
    name = "native"

    def __init__(self, dist: Path):
        from wsd.native import NativeModel

        self.dist = Path(dist)
        self.model = NativeModel(self.dist)

    def run(self, entry, inputs):
        t0 = time.perf_counter()
        outs = self.model.run(entry, *inputs)
        return outs, (time.perf_counter() - t0) * 1000

    def set_lora(self, path, scale=1.0):
        return self.model.set_lora(path, scale)

    def tokenize(self, prompts: list[str], index: int = 0) -> list[list[int]]:
        """The page's JS tokenizer (the build's index-th), run by node on the same files."""
        proc = subprocess.run(  # nosec B603: node on our own script, no shell
            [toolchain.find("node"), str(web_dir() / "tools" / "tokenize.mjs"), str(self.dist), str(index)],
            input=json.dumps(prompts),
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        return json.loads(proc.stdout)

    def generate(
        self, prompt, negative, steps, guidance, scheduler, noise=None, seed=None, step_noise=None, start=None
    ):
        """pipeline.js's loop, step for step, on the native module, from the same generation plan
        (without `noise` or `step_noise`, the page's own seeded noise for `seed`, drawn by node).
        `start`: an image to start from (see `start_latents`)."""
        from conformance.stages import page_noise

        t0 = time.perf_counter()
        shape = self.model.manifest["latent_shape"]
        if noise is None:
            noise = page_noise(seed, int(np.prod(shape))).reshape(shape)
        manifest = self.model.manifest
        plan = manifest["generation"]
        conditioning = self.encode_text(plan, prompt, negative)
        for name, c in plan.get("constants", {}).items():
            conditioning[name] = np.asarray(c["data"], c["dtype"]).reshape(c["shape"])
        tbl = self.table(scheduler, steps)
        if start is None:
            latents = (noise * np.float32(tbl["init_noise_sigma"])).astype("float32")
        else:
            tbl, latents, inpaint = self.start_latents(plan, tbl, steps, np.asarray(noise, "float32"), seed, start)
            conditioning.update(inpaint)
        state = schedulers.LoopState(latents)
        step = self.step_fn()
        signature = [i["name"] for i in manifest["entry_points"][plan["denoise"]["entry"]]["inputs"]]

        def fresh(i: int) -> np.ndarray:  # a stochastic sampler's step noise (pipeline.js freshNoise)
            drawn = step_noise[i] if step_noise is not None else page_noise(seed, int(np.prod(shape)), step=i)
            return np.asarray(drawn, "float32").reshape(shape)

        for i, t in enumerate(tbl["timesteps"]):
            scale = tbl["input_scale"][i]
            x = latents if scale == 1 else self.run(plan["denoise"]["scale_entry"], [latents, np.float32(scale)])[0][0]
            env = {**conditioning, "latents": x, "timestep": np.float32(t), "guidance_scale": np.float32(guidance)}
            eps = self.run(plan["denoise"]["entry"], [env[name] for name in signature])[0][0]
            latents = state.step(tbl, i, latents, eps, step, fresh)
        vae, to_rgba = plan["decode"]
        image = self.run(vae, [latents])[0][0]
        rgba = self.run(to_rgba, [image])[0][0]
        image = rgb_of(rgba, *rgba.shape)
        return {"latents": latents, "image": image, "ms": (time.perf_counter() - t0) * 1000}

    def start_latents(self, plan, tbl, steps, noise, seed, start: dict):
        """pipeline.js startLatents: the table from the row `strength` gives, the first latents
        and, for an inpainting UNet, its mask and masked image latents. `start`: init_image (H, W, 3
        in 0..255), strength, mask_image (H, W, 3: white repaints), and the posterior samples'
        noise (posterior_noise, masked_noise; default: the page's seeded streams)."""
        from conformance.stages import page_noise
        from wsd.generation import pixel_mask

        shape, size = noise.shape, noise.size
        inpaint = plan.get("inpaint")
        if bool(inpaint) != (start.get("mask_image") is not None):
            raise ValueError("an inpainting model needs a mask, and only an inpainting model takes one")
        strength = start.get("strength", 1.0 if inpaint else 0.8)
        tbl = schedulers.from_step(tbl, schedulers.begin_for_strength(steps, strength))
        image = np.asarray(start["init_image"], "float32")[None]
        zeros = np.zeros(shape, "float32")

        def encode(pixels, drawn, which):
            drawn = page_noise(seed, size, **{which: True}) if drawn is None else drawn
            return self.run(plan["encode"], [pixels, np.asarray(drawn, "float32").reshape(shape)])[0][0]

        if inpaint and strength == 1.0:  # the inpainting pipeline starts from pure noise there
            latents = (noise * np.float32(tbl["init_noise_sigma"])).astype("float32")
        else:
            clean = encode(image, start.get("posterior_noise"), "posterior")
            coeffs = np.asarray([*tbl["add_noise"], 0, 0, 0, 0, 0, 0], "float32")
            latents = self.run(plan["denoise"]["step_entry"], [clean, noise, zeros, zeros, zeros, zeros, coeffs])[0][0]
        if not inpaint:
            return tbl, latents, {}
        keep = pixel_mask(start["mask_image"]) < 0.5
        masked = np.where(keep[..., None], image[0], np.float32(127.5))[None]  # 127.5: 0 after x/255*2-1
        every = image.shape[1] // shape[-1]
        mask = (~keep[::every, ::every]).astype("float32")[None, None]  # nearest, as F.interpolate
        return tbl, latents, {"mask": mask, "masked_image_latents": encode(masked, start.get("masked_noise"), "masked")}

    def encode_text(self, plan: dict, prompt: str, negative: str) -> dict[str, np.ndarray]:
        """pipeline.js's encodeText: text outputs batched [negative, prompt] by name."""
        entry = plan["text"]["entry"]
        count = len(plan["text"]["tokenizers"])
        ids = [self.tokenize([negative, prompt], k) for k in range(count)]

        def encode(which: int) -> list[np.ndarray]:
            return self.run(entry, [np.asarray([ids[k][which]], "int32") for k in range(count)])[0]

        cond = encode(1)
        names = [o["name"] for o in self.model.manifest["entry_points"][entry]["outputs"]]
        if plan["text"].get("cfg") is False:  # a guidance-embedded UNet (LCM): the prompt alone
            return dict(zip(names, cond, strict=True))
        zeros = negative == "" and plan["text"].get("zero_empty_negative")
        uncond = [np.zeros_like(c) for c in cond] if zeros else encode(0)
        return {n: np.concatenate([u, c], axis=0) for n, u, c in zip(names, uncond, cond, strict=True)}


class WebGPUBackend(Backend):
    """The open model in the runner page; the page keeps it loaded between stages."""

    name = "webgpu"

    def __init__(
        self, runner, url: str, dist: Path, timeout_s: float = 600, profile: bool = False, gemm_path: str = "auto"
    ):
        self.runner, self.url, self.dist, self.timeout_s = runner, url, Path(dist), timeout_s
        # profile: a device with timestamp queries, so `bench` times every kernel (the perf gate);
        # gemm_path: a --subgroup-matrix build's GEMMs as the page would pick them, or tiled, or TVM's
        opened = runner.call("open", open_spec(url, profile, gemm_path), timeout_s=timeout_s)
        self.adapter, self.open_timings = opened["adapter"], opened["timings"]
        # a --subgroup-matrix build's GEMMs: on tensor cores, or tiled where the device has none
        for path in ("subgroup_matrix_kernels", "tiled_gemm_kernels"):
            if opened.get(path):
                self.adapter = {**self.adapter, path: opened[path]}

    def run(self, entry, inputs):
        result = self.runner.call("run", {"entry": entry, "inputs": [encode(np.asarray(x)) for x in inputs]})
        return [decode(o) for o in result["outputs"]], result["ms"]

    def bench(self, entry: str, inputs, runs: int, warmup_ms: float = 0) -> dict:
        """`runs` timed calls after warm-up calls (at least `warmup_ms` of them): {"ms": wall ms per
        call, "kernel_runs": per profiled call, [{kernel, ms}] in dispatch order (None when the page
        was opened without profile)}."""
        spec = {"entry": entry, "inputs": [encode(np.asarray(x)) for x in inputs], "repeat": runs}
        spec |= {"profileRuns": runs, "warmupMs": warmup_ms}
        out = self.runner.call("bench", spec, timeout_s=self.timeout_s)
        return {"ms": out["ms"], "kernel_runs": out.get("kernel_runs")}

    def run_kernels(self, kernels: list[dict]) -> list:
        """Per kernel: its outputs, or {"error": text} when it cannot be called alone."""
        wire = [{"name": k["name"], "outputs": k["outputs"], "args": [encode(a) for a in k["args"]]} for k in kernels]
        results = self.runner.call("runKernels", {"kernels": wire})
        return [r if isinstance(r, dict) else [decode(o) for o in r] for r in results]

    def run_chain(self, buffers: list[dict], calls: list[dict], upto: int, fetch: list[int]) -> list[np.ndarray]:
        """Kernel calls chained on GPU buffers (see web/lib/session.js runChain)."""
        wire = [{**b, "init": encode(b["init"])} if "init" in b else b for b in buffers]
        wire_calls = [{"fill": [[i, encode(a)] for i, a in c["fill"]]} if "fill" in c else c for c in calls]
        spec = {"buffers": wire, "calls": wire_calls, "upto": upto, "fetch": fetch}
        return [decode(o) for o in self.runner.call("runChain", spec, timeout_s=self.timeout_s)]

    def tokenize(self, prompts, index: int = 0):
        return self.runner.call("tokenize", {"prompts": prompts, "index": index})

    def set_lora(self, path, scale=1.0):
        import base64

        data = None if path is None else base64.b64encode(Path(path).read_bytes()).decode()
        spec = {"data": data, "scale": float(scale), "name": str(path)}
        return self.runner.call("setLora", spec, timeout_s=self.timeout_s)["weights"]

    def generate(
        self, prompt, negative, steps, guidance, scheduler, noise=None, seed=None, step_noise=None, start=None
    ):
        opts = {
            "prompt": prompt,
            "negativePrompt": negative,
            "steps": steps,
            "guidance": guidance,
            "scheduler": scheduler,
        }
        # without noise the page draws its own from the seed (lib/pipeline.js gaussianNoise)
        opts.update({"seed": int(seed)} if noise is None else {"noise": encode(np.asarray(noise, "float32"))})
        if step_noise is not None:
            opts["stepNoise"] = encode(np.asarray(step_noise, "float32"))
        for key, value in (start or {}).items():
            if key == "strength":
                opts["strength"] = float(value)
            else:
                opts[START_OPTIONS[key]] = encode(np.asarray(value, "float32"))
        out = self.runner.call("generate", opts, timeout_s=self.timeout_s)
        return {"latents": decode(out["latents"]), "image": image_of(out), "ms": out["timings"]["wall_ms"]}

    def memory(self) -> dict:
        return self.runner.call("memory")
