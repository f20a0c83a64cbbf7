"""The stage registry: what is compared, how its inputs are made, what the reference is.

A stage is one declarative entry: name, compiled entry point (if any), outputs and the
kind of metric each gets, variants (each a test case), and three functions: seeded
inputs, the diffusers/transformers reference (conformance/reference: CPU, fp32, no `wsd`
code), and the candidate on a backend.
Adding a stage is adding one `Stage(...)` to STAGES.
"""

from __future__ import annotations

import functools
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from conformance.reference import stages as reference


@dataclass(frozen=True)
class Output:
    name: str
    kind: str  # "tensor" (float metrics), "image" (uint8, adds SSIM) or "exact"
    dtype: str = ""  # the tolerance table's dtype; empty: the build's dtype
    families: tuple[str, ...] = ()  # the model families that have it; empty: every family


@dataclass(frozen=True)
class Stage:
    name: str
    outputs: tuple[Output, ...]
    inputs: Callable  # (ctx, params) -> inputs
    reference: Callable  # (ReferenceModel, inputs, params) -> {output: array}
    candidate: Callable  # (backend, ctx, inputs, params) -> {output: array}
    entry: str | None = None  # the compiled entry point under test (localization needs it)
    variants: dict[str, dict] = field(default_factory=lambda: {"": {}})
    needs: tuple[str, ...] | None = None  # entry points the candidate calls (default: entry)
    timed: bool = False  # one entry point called alone: the perf gate times it (conformance/perf.py)

    def required(self) -> tuple[str, ...]:
        return self.needs if self.needs is not None else ((self.entry,) if self.entry else ())


@dataclass(frozen=True)
class Case:
    model: str
    stage: Stage
    variant: str
    params: dict
    outputs: tuple[Output, ...] = ()  # the stage's outputs the model's family has

    @property
    def id(self) -> str:
        return "/".join(p for p in (self.model, self.stage.name, self.variant) if p)


def rng_for(*parts) -> np.random.Generator:
    """A generator seeded by the case's name: inputs are fixed per case, not per run order."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, (time.perf_counter() - t0) * 1000


# --- tokenizer: the page's JS tokenizer vs transformers' CLIPTokenizer ------------------

PROMPTS = (
    "",
    "a photo of an astronaut riding a horse on mars",
    "A PHOTO   of\ta\nCAT!!",
    "naïve café, Ångström — déjà vu",
    "日本語のテキスト 和 中文",
    "emoji 🐱🚀 and ✨sparkles✨",
    "it's they're we've I'm you'll he'd",
    "3.14159 + 2,718 = 5.86; 100% (ok?) [x] {y} <z>",
    "a <|endoftext|> b",
    "over seventy-seven tokens: " + "a very long prompt " * 20,
    "mixed\u00a0nbsp\u2003em-space",
    "ǅ ﬁ ﬀ Straße İstanbul",
)


def ids_name(index: int) -> str:
    """The tokenizer stage's output for the index-th tokenizer: ids, ids_2 (SDXL's second)."""
    return "ids" if index == 0 else f"ids_{index + 1}"


def token_ids(tok, prompts, length: int) -> np.ndarray:
    return np.asarray(
        [tok(p, padding="max_length", max_length=length, truncation=True).input_ids for p in prompts], "int32"
    )


def _tokenizer_candidate(backend, ctx, prompts, params):
    return {
        ids_name(k): np.asarray(backend.tokenize(list(prompts), k), "int32") for k in range(len(ctx.spec.tokenizers))
    }


# --- compiled entry points against diffusers' own components ------------------------------


def _entry_candidate(*outputs: str):
    """The compiled entry point on a backend; its outputs in order get the stage's output names
    (a family with fewer outputs, SD 1.5's one-output text entry, fills the first names)."""

    def candidate(backend, ctx, inputs, params):
        outs, _ = backend.run(params["entry"], entry_args(inputs))
        return dict(zip(outputs, outs, strict=False))

    return candidate


def entry_args(inputs) -> list:
    """An entry stage's inputs in signature order (the UNet's come by name, in that order)."""
    return list(inputs.values()) if isinstance(inputs, dict) else list(inputs)


def _clip_inputs(ctx, params):
    """The prompt's ids from the folder's own tokenizers (the tokenizer stage gates the page's)."""
    return [token_ids(tok, [params["prompt"]], ctx.spec.max_tokens) for tok in ctx.reference.tokenizers]


def _unet_inputs(ctx, params):
    """Seeded values for the UNet's signature, by name and in its order: the loop's own inputs,
    the generation plan's constants (SDXL's time ids as the page sends them; the reference
    makes its own), noise for the rest."""
    from wsd.entries import entries_for
    from wsd.generation import time_ids

    rng = rng_for(ctx.spec.name, "unet", params["t"], params["g"])
    known = {"timestep": params["t"], "guidance_scale": params["g"], "time_ids": time_ids(ctx.spec.image_size)}
    entry = next(e for e in entries_for(ctx.spec) if e.name == "unet")
    out = {}
    for t in entry.inputs(ctx.spec):
        value = known.get(t.name)
        # the time ids' [uncond, cond] rows, or the first alone for a UNet without a CFG batch (LCM)
        data = rng.standard_normal(t.shape) if value is None else np.ravel(value)[: int(np.prod(t.shape))]
        data = np.reshape(data, t.shape)
        out[t.name] = np.asarray(data, t.dtype)
    return out


def _vae_inputs(ctx, params):
    return [rng_for(ctx.spec.name, "vae").standard_normal(ctx.latent_shape).astype("float32")]


def init_image(size: int, seed: int) -> np.ndarray:
    """A seeded picture for img2img, (size, size, 3) uint8: smooth gradients and a few discs, so the
    encoder sees edges and flat areas, not white noise."""
    rng = rng_for("init-image", size, seed)
    y, x = np.mgrid[0:size, 0:size] / max(size - 1, 1)
    image = np.stack([x, y, 1 - (x + y) / 2], axis=-1) * 200 + 30
    for _ in range(4):
        cy, cx, r = rng.uniform(0.1, 0.9), rng.uniform(0.1, 0.9), rng.uniform(0.08, 0.25)
        image[(y - cy) ** 2 + (x - cx) ** 2 < r * r] = rng.integers(0, 256, 3)
    return image.round().clip(0, 255).astype(np.uint8)


def init_mask(size: int, seed: int) -> np.ndarray:
    """A seeded inpainting mask, (size, size) uint8 L: white (repaint) inside one disc and one band,
    so the latent mask has both values and edges."""
    rng = rng_for("init-mask", size, seed)
    y, x = np.mgrid[0:size, 0:size] / max(size - 1, 1)
    cy, cx, r = rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.7), rng.uniform(0.15, 0.3)
    inside = ((y - cy) ** 2 + (x - cx) ** 2 < r * r) | (x > 0.85)
    return np.where(inside, 255, 0).astype(np.uint8)


def _vae_encode_inputs(ctx, params):
    image = init_image(ctx.spec.image_size, params["image_seed"]).astype("float32")[None]
    return [image, generator_draws(params["generator_seed"], 1, ctx.latent_shape)[0]]


def _rgba_inputs(ctx, params):
    size = ctx.spec.image_size
    return [rng_for(ctx.spec.name, "rgba").integers(0, 256, (1, size, size, 3)).astype("float32")]


# --- samplers: the table + compiled step vs diffusers' scheduler.step --------------------

# Ten steps of a stand-in model that reads its (scaled) input, so a wrong scale changes the result;
# the stochastic samplers' draws come from a generator of this seed (the reference's own).
SCHEDULER_LOOP = {"steps": 10, "input_weight": 0.1, "generator_seed": 0}


def _scheduler_inputs(ctx, params):
    rng = rng_for(ctx.spec.name, "scheduler", params["sampler"])
    noise = rng.standard_normal(ctx.latent_shape).astype("float32")
    eps = rng.standard_normal((params["steps"] + 1, *ctx.latent_shape)).astype("float32")
    return [noise, eps, generator_draws(params["generator_seed"], params["steps"], ctx.latent_shape)]


def _scheduler_candidate(backend, ctx, inputs, params):
    from wsd.schedulers import LoopState

    noise, eps, draws = inputs
    tbl = backend.table(params["sampler"], params["steps"])
    sample = (noise * np.float32(tbl["init_noise_sigma"])).astype("float32")
    state, step = LoopState(sample), backend.step_fn()
    for i in range(len(tbl["timesteps"])):
        # the compiled scale_model_input, every step (the page skips it where the scale is 1)
        scaled = backend.run("scale_model_input", [sample, np.float32(tbl["input_scale"][i])])[0][0]
        model_output = (eps[i] + np.float32(params["input_weight"]) * scaled).astype("float32")
        sample = state.step(tbl, i, sample, model_output, step, draws.__getitem__)
    return {"sample": sample, "timesteps": np.asarray(tbl["timesteps"], "float64")}


# --- the whole pipeline: prompt -> image against diffusers' StableDiffusionPipeline ------

PIPELINE = {"prompt": PROMPTS[1], "negative": "blurry", "steps": 4, "guidance": 7.5, "seed": 1}
LORA = {"scale": 0.7, "seed": 0}  # the LoRA case's: made from this seed (conformance/reference/lora.py)


def page_noise(
    seed: int, count: int, step: int | None = None, posterior: bool = False, masked: bool = False
) -> np.ndarray:
    """The page's seeded noise (lib/pipeline.js's gaussianNoise; with `step`, that denoising step's
    stepNoise; with `posterior`/`masked`, the start image's / masked image's posterior noise),
    computed by node."""
    from wsd import pagejs

    if posterior or masked:
        call = ("posteriorNoise" if posterior else "maskedNoise", int(seed), int(count))
    elif step is None:
        call = ("gaussianNoise", int(seed), int(count))
    else:
        call = ("stepNoise", int(seed), int(step), int(count))
    return np.asarray(pagejs.call("pipeline.js", *call), "float32")


def generator_draws(seed: int, count: int, shape) -> np.ndarray:
    """What diffusers draws from `torch.Generator().manual_seed(seed)`: `count` standard normals of
    the latents' shape, in order. A text-to-image pipeline given its latents draws one per step of a
    stochastic sampler; an img2img pipeline draws the posterior sample, the added noise, then those
    (the reference gets the generator, the candidate these draws; a wrong order fails, never passes)."""
    import torch

    generator = torch.Generator().manual_seed(int(seed))
    return np.stack([torch.randn(tuple(shape), generator=generator).numpy() for _ in range(count)])


def _pipeline_inputs(ctx, params):
    shape = ctx.latent_shape
    if params.get("mask"):  # inpainting: the generator draws [the image's posterior,] noise, the masked image's
        strength = params.get("strength", 1.0)
        first = 0 if strength == 1.0 else 1  # at strength 1 the pipeline never encodes the image itself
        draws = generator_draws(params["seed"], params["steps"] + 4, shape)
        start = {"init_image": init_image(ctx.spec.image_size, params["seed"]), "strength": strength}
        start["mask_image"] = np.repeat(init_mask(ctx.spec.image_size, params["seed"])[..., None], 3, axis=-1)
        start["masked_noise"] = draws[first + 1]
        if first:
            start["posterior_noise"] = draws[0]
        return {**params, "start": start, "noise": draws[first], "step_noise": draws[first + 2 :]}
    if "strength" in params:  # img2img: every draw is the generator's (the pipeline takes no latents)
        draws = generator_draws(params["seed"], params["steps"] + 3, shape)  # enough for PNDM's extra step
        image = init_image(ctx.spec.image_size, params["seed"])
        start = {"init_image": image, "strength": params["strength"], "posterior_noise": draws[0]}
        return {**params, "start": start, "noise": draws[1], "step_noise": draws[2:]}
    inputs = {**params, "noise": page_noise(params["seed"], int(np.prod(shape))).reshape(shape)}
    if params.get("lora"):  # a seeded LoRA for this folder, made with PEFT as diffusers' scripts make one
        inputs["lora"] = {**params["lora"], "path": _lora_file(ctx.folder, params["lora"]["seed"])}
    if params.get("step_noise"):
        inputs["step_noise"] = generator_draws(params["seed"], params["steps"], shape)
    return inputs


@functools.lru_cache(maxsize=8)
def _lora_file(folder: Path, seed: int) -> Path:
    import tempfile

    from conformance.reference.lora import make_lora

    return make_lora(folder, Path(tempfile.mkdtemp(prefix="wsd-lora-")), seed)


def _pipeline_candidate(backend, ctx, inputs, params):
    # `seeded`: the page draws its own noise from the seed, as `wsd generate --seed` does (the
    # reference still gets page_noise(seed): a fault in the page's seed -> noise path shows)
    noise = {"seed": inputs["seed"]} if params.get("seeded") else {"noise": inputs["noise"]}
    for key in ("step_noise", "start"):
        if key in inputs:
            noise[key] = inputs[key]
    if "lora" in inputs:
        backend.set_lora(inputs["lora"]["path"], inputs["lora"]["scale"])
    try:
        out = backend.generate(
            inputs["prompt"], inputs["negative"], inputs["steps"], inputs["guidance"], params["scheduler"], **noise
        )
    finally:
        if "lora" in inputs:
            backend.set_lora(None)
    return {"latents": out["latents"], "image": out["image"]}


STAGES: tuple[Stage, ...] = (
    Stage(
        "tokenizer",
        (Output("ids", "exact", "int32"), Output("ids_2", "exact", "int32", ("sdxl",))),
        lambda ctx, p: PROMPTS,
        reference.tokenizer,
        _tokenizer_candidate,
    ),
    Stage(
        "clip",
        # SDXL: both encoders' penultimate states concatenated, and the second's pooled projection
        (Output("embeddings", "tensor"), Output("pooled", "tensor", families=("sdxl",))),
        _clip_inputs,
        reference.clip,
        _entry_candidate("embeddings", "pooled"),
        entry="clip",
        timed=True,
        variants={"": {"prompt": PROMPTS[1]}},
    ),
    Stage(
        "unet",
        (Output("noise_pred", "tensor"),),
        _unet_inputs,
        reference.unet,
        _entry_candidate("noise_pred"),
        entry="unet",
        timed=True,
        # Several timesteps; guidance on (7.5) and off (1.0, and 0 as SD-Turbo runs: diffusers then
        # takes the conditional prediction alone).
        variants={
            "t981-g7.5": {"t": 981, "g": 7.5},
            "t500-g1": {"t": 500, "g": 1.0},
            "t1-g7.5": {"t": 1, "g": 7.5},
            "t500-g0": {"t": 500, "g": 0.0},
        },
    ),
    Stage(
        "vae",
        (Output("image", "tensor"),),
        _vae_inputs,
        reference.vae,
        _entry_candidate("image"),
        entry="vae",
        timed=True,
    ),
    Stage(
        "vae_encode",
        (Output("init_latents", "tensor"),),
        _vae_encode_inputs,
        reference.vae_encode,
        _entry_candidate("init_latents"),
        entry="vae_encode",
        timed=True,
        variants={"": {"image_seed": 0, "generator_seed": 7}},
    ),
    Stage(
        "image_to_rgba",
        (Output("rgba", "exact", "int32"),),
        _rgba_inputs,
        reference.image_to_rgba,
        _entry_candidate("rgba"),
        entry="image_to_rgba",
        timed=True,
    ),
    Stage(
        "scheduler",
        (Output("sample", "tensor"), Output("timesteps", "tensor")),
        _scheduler_inputs,
        reference.scheduler,
        _scheduler_candidate,
        entry="scheduler_step",
        variants={
            name: {"sampler": name, **SCHEDULER_LOOP}
            for name in ("dpm-solver++", "pndm", "euler", "ddim", "euler-a", "lcm")
        },
        needs=("scheduler_step", "scale_model_input"),
    ),
    Stage(
        "pipeline",
        (Output("latents", "tensor"), Output("image", "image", "float32")),
        _pipeline_inputs,
        reference.pipeline,
        _pipeline_candidate,
        # Every sampler the build writes, through the page's own loop (PNDM's history and saved
        # sample, Euler's scale_model_input); guidance off (1) and a negative prompt among them.
        variants={
            "dpm-solver++-4": {**PIPELINE, "scheduler": "dpm-solver++"},
            # the user's own path: no noise passed in, the page's seed -> noise (the CLI's --seed)
            "dpm-solver++-4-seeded": {**PIPELINE, "scheduler": "dpm-solver++", "seed": 4, "seeded": True},
            "pndm-4-g1": {**PIPELINE, "scheduler": "pndm", "guidance": 1.0, "negative": ""},
            "euler-4": {**PIPELINE, "scheduler": "euler", "negative": "", "seed": 2},
            "ddim-4-g5": {**PIPELINE, "scheduler": "ddim", "guidance": 5.0, "seed": 3},
            # the stochastic samplers, each step's noise the draws of diffusers' generator: Euler
            # Ancestral as SD-Turbo runs it (guidance 0, no negative prompt) and LCM
            "euler-a-4-g0": {
                **PIPELINE,
                "scheduler": "euler-a",
                "guidance": 0.0,
                "negative": "",
                "seed": 5,
                "step_noise": True,
            },
            # LCM without a negative prompt, as its pipeline (which takes none) runs on an LCM folder
            "lcm-4": {**PIPELINE, "scheduler": "lcm", "negative": "", "seed": 6, "step_noise": True},
            # img2img from a seeded picture: DPM-Solver++ restarting first order at step 2 of 4, PNDM's
            # counters restarting at step 1, Euler Ancestral's step noise after the image's draws
            "img2img-dpm-solver++-4-s0.5": {**PIPELINE, "scheduler": "dpm-solver++", "seed": 7, "strength": 0.5},
            "img2img-pndm-4-s0.75": {**PIPELINE, "scheduler": "pndm", "seed": 8, "strength": 0.75},
            "img2img-euler-a-4-s0.6": {**PIPELINE, "scheduler": "euler-a", "seed": 9, "strength": 0.6},
            # an inpainting model's own cases (only theirs run on one): from noise at strength 1, and
            # from the noised image at 0.75 with Euler Ancestral's step noise after the image's draws
            "inpaint-dpm-solver++-4": {**PIPELINE, "scheduler": "dpm-solver++", "seed": 10, "mask": True},
            "inpaint-euler-a-4-s0.75": {**PIPELINE, "scheduler": "euler-a", "seed": 11, "mask": True, "strength": 0.75},
            # a LoRA (UNet attention and convs, the text encoders' attention) merged at run time at
            # 0.7, against diffusers' load_lora_weights + fuse_lora(lora_scale=0.7)
            "lora-dpm-solver++-4": {**PIPELINE, "scheduler": "dpm-solver++", "seed": 12, "lora": LORA},
        },
        needs=("clip", "unet", "scheduler_step", "scale_model_input", "vae", "vae_encode", "image_to_rgba"),
    ),
)


def _applies(stage: Stage, params: dict, inpainting: bool, samplers: tuple[str, ...] | None = None) -> bool:
    """A case with a mask is an inpainting model's; an inpainting pipeline always takes a mask, so
    the other pipeline cases are not its. A model with fewer samplers (an LCM folder: LCM alone)
    has only their cases."""
    sampler = params.get("sampler") or params.get("scheduler")
    if samplers is not None and sampler is not None and sampler not in samplers:
        return False
    if params.get("mask"):
        return inpainting
    return not (inpainting and stage.name == "pipeline")


def cases(
    model: str,
    stages: tuple[Stage, ...] = STAGES,
    family: str = "sd15",
    inpainting: bool = False,
    samplers: tuple[str, ...] | None = None,
) -> list[Case]:
    """The cases of a model of `family`; an inpainting model's pipeline cases are the ones with a
    mask (its pipeline needs one), every other model's those without."""
    out = []
    for stage in stages:
        outputs = tuple(o for o in stage.outputs if not o.families or family in o.families)
        for variant, params in stage.variants.items():
            if not _applies(stage, params, inpainting, samplers):
                continue
            out.append(Case(model, stage, variant, {**params, "entry": stage.entry}, outputs))
    return out


def all_cases(
    model: str = "sd15-tiny",
    family: str | None = None,
    inpainting: bool = False,
    samplers: tuple[str, ...] | None = None,
) -> list[Case]:
    """Every case of a model; `family`, `inpainting`, `samplers` for a name that is not a preset (a
    user's folder)."""
    from wsd import models

    return cases(model, STAGES, family or models.get(model).family, inpainting, samplers)
