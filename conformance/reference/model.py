"""A diffusers folder as its users load it: `DiffusionPipeline.from_pretrained(folder)`, fp32 on CPU.

The sampler recipes below are the page's sampler names written as diffusers' docs tell users to
switch samplers (`pipe.scheduler = Sampler.from_config(pipe.scheduler.config)`). They are
written here on purpose, not read from `wsd`: a wrong recipe in the product then differs from
this one instead of being copied into it.
"""

from __future__ import annotations

import inspect
import json
from functools import cached_property
from pathlib import Path

# name -> (diffusers class, from_config overrides). "pndm" is PLMS (skip_prk_steps), as SD 1.5
# ships it; "dpm-solver++" is DPMSolverMultistepScheduler's own default (2M, midpoint); "euler-a"
# and "lcm" are Euler Ancestral and LCM as diffusers' docs switch to them.
SAMPLERS = {
    "dpm-solver++": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "euler": ("EulerDiscreteScheduler", {}),
    "ddim": ("DDIMScheduler", {}),
    "pndm": ("PNDMScheduler", {"skip_prk_steps": True}),
    # the stochastic ones: the pipeline hands them its `generator`, one draw per step
    "euler-a": ("EulerAncestralDiscreteScheduler", {}),
    "lcm": ("LCMScheduler", {}),
}

# A folder without model_index.json: its components, loaded one by one as diffusers' docs show.
_COMPONENTS = {
    "unet": ("diffusers", "UNet2DConditionModel"),
    "vae": ("diffusers", "AutoencoderKL"),
    "text_encoder": ("transformers", "CLIPTextModel"),
    "text_encoder_2": ("transformers", "CLIPTextModelWithProjection"),
    "tokenizer": ("transformers", "CLIPTokenizer"),
    "tokenizer_2": ("transformers", "CLIPTokenizer"),
}


class ReferenceModel:
    """The folder's diffusers pipeline (loaded once, on first use) and what the stages ask of it."""

    def __init__(self, folder: Path, image_size: int | None = None):
        self.folder = Path(folder)
        self._image_size = image_size

    @cached_property
    def sdxl(self) -> bool:
        index = self.folder / "model_index.json"
        if index.is_file():
            return json.loads(index.read_text())["_class_name"].startswith("StableDiffusionXL")
        return (self.folder / "text_encoder_2").is_dir()

    @cached_property
    def pipe(self):
        return self.load()

    def load(self):
        """The folder's text-to-image pipeline, loaded anew."""
        import diffusers
        import torch

        extra = {"add_watermarker": False} if self.sdxl else {"safety_checker": None, "requires_safety_checker": False}
        if (self.folder / "model_index.json").is_file():
            # a local folder, never the hub: local_files_only (hence no revision to pin)
            pipe = diffusers.DiffusionPipeline.from_pretrained(  # nosec B615
                str(self.folder), torch_dtype=torch.float32, local_files_only=True, **extra
            )
        else:
            pipe = self._from_components(extra)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def _from_components(self, extra: dict):
        import diffusers
        import transformers

        libraries = {"diffusers": diffusers, "transformers": transformers}
        parts = {}
        for name, (library, cls) in _COMPONENTS.items():
            if (self.folder / name).is_dir():
                loader = getattr(libraries[library], cls)
                parts[name] = loader.from_pretrained(str(self.folder), subfolder=name, local_files_only=True)  # nosec B615
        own = json.loads((self.folder / "scheduler" / "scheduler_config.json").read_text())["_class_name"]
        parts["scheduler"] = getattr(diffusers, own).from_pretrained(str(self.folder), subfolder="scheduler")  # nosec B615
        if self.sdxl:
            extra = {**extra, "image_encoder": None, "feature_extractor": None}
            return diffusers.StableDiffusionXLPipeline(**parts, **extra)
        return diffusers.StableDiffusionPipeline(**parts, feature_extractor=None, **extra)

    @cached_property
    def scheduler_config(self):
        """The folder's scheduler config as diffusers loaded it (a FrozenDict that remembers which
        keys were only defaults): every sampler is made from this, never from another sampler."""
        return self.pipe.scheduler.config

    @property
    def image_size(self) -> int:
        if self._image_size:
            return self._image_size
        return self.pipe.unet.config.sample_size * self.pipe.vae_scale_factor

    @property
    def tokenizers(self) -> list:
        return [self.pipe.tokenizer, *([self.pipe.tokenizer_2] if self.sdxl else [])]

    def sampler(self, name: str):
        """`Sampler.from_config(pipe.scheduler.config, **overrides)`, diffusers' own semantics."""
        import diffusers

        cls, overrides = SAMPLERS[name]
        return getattr(diffusers, cls).from_config(self.scheduler_config, **overrides)

    def with_sampler(self, name: str):
        """The pipeline with a fresh sampler of that name (PNDM keeps counters: never reuse one).
        The sampler is made (from the folder's config, cached on first read) before it replaces
        the pipeline's scheduler."""
        self.pipe.scheduler = self.sampler(name)
        return self.pipe

    @cached_property
    def img2img(self):
        """The folder as diffusers' image-to-image pipeline: `StableDiffusion(XL)Img2ImgPipeline
        .from_pretrained(folder)`; a folder without model_index.json through `from_pipe` of the
        text-to-image one (diffusers' documented way to reuse its components)."""
        import diffusers
        import torch

        if not (self.folder / "model_index.json").is_file():
            pipe = diffusers.AutoPipelineForImage2Image.from_pipe(self.pipe)
        else:
            cls = diffusers.StableDiffusionXLImg2ImgPipeline if self.sdxl else diffusers.StableDiffusionImg2ImgPipeline
            extra = {"add_watermarker": False}
            if not self.sdxl:
                extra = {"safety_checker": None, "requires_safety_checker": False}
            pipe = cls.from_pretrained(  # nosec B615: a local folder, never the hub
                str(self.folder), torch_dtype=torch.float32, local_files_only=True, **extra
            )
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def with_lora(self, path: Path, scale: float, sampler: str):
        """A fresh text-to-image pipeline of the folder with the LoRA file fused at `scale`, as
        diffusers' docs show (`load_lora_weights`, then `fuse_lora(lora_scale=...)`); fresh, so the
        other cases' pipeline never sees the LoRA."""
        pipe = self.load()
        pipe.load_lora_weights(str(Path(path).parent), weight_name=Path(path).name)
        pipe.fuse_lora(lora_scale=scale)
        pipe.scheduler = self.sampler(sampler)
        return pipe

    def img2img_with_sampler(self, name: str):
        self.img2img.scheduler = self.sampler(name)
        return self.img2img

    def add_time_ids(self):
        """SDXL's add_time_ids as its pipeline makes them for a square image of the gate's size:
        original size = target size, crop (0, 0) (the pipeline's defaults)."""
        import torch

        size = (self.image_size, self.image_size)
        pipe = self.pipe
        width = pipe.text_encoder_2.config.projection_dim
        if "aesthetic_score" in inspect.signature(pipe._get_add_time_ids).parameters:
            # the img2img/inpainting form, with its __call__'s defaults; without
            # requires_aesthetics_score the scores are not in the ids (the positive half is returned)
            return pipe._get_add_time_ids(
                size, (0, 0), size, 6.0, 2.5, size, (0, 0), size, dtype=torch.float32, text_encoder_projection_dim=width
            )[0]
        return pipe._get_add_time_ids(size, (0, 0), size, dtype=torch.float32, text_encoder_projection_dim=width)
