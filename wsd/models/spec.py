"""What a model is, declaratively: its components, their configs, its entry points.

A `ModelSpec` names diffusers/transformers component classes and the configs they are
built from, and lists the entry points the compiler captures. SD 1.5 has one text
encoder; SDXL adds a second one, pooled embeddings and time ids, which is why text
encoders are a tuple and entry points a list rather than fixed fields.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Component:
    """One subfolder of a diffusers model folder (unet/, vae/, text_encoder/, ...)."""

    subfolder: str
    library: str  # "diffusers" or "transformers"
    class_name: str  # e.g. "UNet2DConditionModel"
    config: dict
    weights: tuple[str, ...]  # file names tried in order
    required_keys: tuple[str, ...]  # config keys the architecture check relies on

    def load_class(self):
        import importlib

        return getattr(importlib.import_module(self.library), self.class_name)


@dataclass(frozen=True)
class Scheduler:
    """A sampler: diffusers class built from the model folder's scheduler config."""

    name: str  # our name, used in file names and on the command line
    class_name: str  # diffusers class
    steps: int  # default number of inference steps
    overrides: dict = field(default_factory=dict)  # config changes on top of the folder's


@dataclass(frozen=True)
class ModelSpec:
    name: str
    family: str  # "sd15", "sdxl": selects the entry point builders
    image_size: int
    unet: Component
    vae: Component
    text_encoders: tuple[Component, ...]
    tokenizers: tuple[str, ...]  # tokenizer subfolders, one per text encoder
    scheduler_config: dict  # written to scheduler/scheduler_config.json by --random-init
    schedulers: tuple[Scheduler, ...]
    default_scheduler: str
    max_tokens: int = 77
    tokenizer_merges: int = 400  # size of the project-made tokenizer's BPE table
    tokenizer_pads: tuple[str, ...] = ()  # pad token per project-made tokenizer (default: end of text)
    pipeline_class: str = "StableDiffusionPipeline"  # model_index.json's _class_name
    default_guidance: float = 7.5

    @property
    def components(self) -> tuple[Component, ...]:
        return (self.unet, self.vae, *self.text_encoders)

    @property
    def vae_scale(self) -> int:
        return 2 ** (len(self.vae.config["block_out_channels"]) - 1)

    @property
    def latent_size(self) -> int:
        return self.image_size // self.vae_scale

    @property
    def latent_channels(self) -> int:
        return self.unet.config.get("out_channels", self.unet.config["in_channels"])

    @property
    def guidance_embedding(self) -> int | None:
        """An LCM-distilled UNet's guidance embedding width (time_cond_proj_dim): guidance is an
        input of the UNet itself, with no classifier-free batch."""
        return self.unet.config.get("time_cond_proj_dim")

    @property
    def inpainting(self) -> bool:
        """An inpainting UNet: the latents, the mask and the masked image's latents concatenated
        (9 input channels for SD's 4 latent ones)."""
        return self.unet.config["in_channels"] == 2 * self.latent_channels + 1

    @property
    def text_hidden(self) -> int:
        return sum(t.config["hidden_size"] for t in self.text_encoders)

    def scheduler(self, name: str) -> Scheduler:
        for s in self.schedulers:
            if s.name == name:
                return s
        known = ", ".join(s.name for s in self.schedulers)
        raise KeyError(f"unknown scheduler {name!r}; known: {known}")

    def config_hash(self) -> str:
        return _hash(
            {
                "components": {c.subfolder: [c.class_name, c.config] for c in self.components},
                "image_size": self.image_size,
                "scheduler": self.scheduler_config,
            }
        )

    def weights_hash(self) -> str:
        """What the seeded random weights depend on (not the image size the build is made for)."""
        body = {
            "components": {c.subfolder: [c.class_name, c.config] for c in self.components},
            "scheduler": self.scheduler_config,
            "tokenizer": [self.tokenizers, self.tokenizer_merges, self.max_tokens],
        }
        if self.tokenizer_pads:  # only where set: SD 1.5's seeded folders keep their cache key
            body["tokenizer_pads"] = list(self.tokenizer_pads)
        return _hash(body)


def _hash(body: dict) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
