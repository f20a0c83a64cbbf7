"""Entry points: the functions a compiled model exports, one declarative row each.

Each row names a torch wrapper around loaded components and the inputs it takes.
The wrappers hold the glue a browser cannot afford to do in JavaScript: classifier-free
guidance batching inside the UNet, VAE scaling and clamping, RGBA packing.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from wsd.models.folder import LoadedModel
from wsd.models.spec import ModelSpec


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int, ...]
    dtype: str

    def as_json(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}

    def example(self, rng: np.random.Generator, high: int = 2) -> np.ndarray:
        if self.dtype.startswith("int"):
            return rng.integers(0, high, size=self.shape).astype(self.dtype)
        return rng.standard_normal(self.shape).astype(self.dtype)


@dataclass(frozen=True)
class EntryPoint:
    name: str
    wrapper: Callable  # (LoadedModel) -> torch.nn.Module
    inputs: Callable[[ModelSpec], tuple[TensorSpec, ...]]
    outputs: Callable[[ModelSpec], tuple[TensorSpec, ...]]


def _torch():
    import torch

    return torch


def clip_wrapper(model: LoadedModel):
    torch = _torch()
    encoder = model.text_encoders[0]

    class Clip(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = encoder

        def forward(self, input_ids):
            return self.encoder(input_ids, return_dict=False)[0]

    return Clip().eval()


def sdxl_text_wrapper(model: LoadedModel):
    """Both encoders' penultimate hidden states, concatenated; pooled from the second's projection."""
    torch = _torch()
    first, second = model.text_encoders

    class SdxlText(torch.nn.Module):
        hidden_layer = -2  # diffusers' SDXL pipelines take the penultimate hidden states (clip_skip None)
        pooled_from = 1  # ... and the pooled embeddings from the second encoder's projection

        def __init__(self):
            super().__init__()
            self.first, self.second = first, second

        def forward(self, input_ids, input_ids_2):
            out1 = self.first(input_ids, output_hidden_states=True)
            out2 = self.second(input_ids_2, output_hidden_states=True)
            h = [out1.hidden_states[self.hidden_layer], out2.hidden_states[self.hidden_layer]]
            pooled = out2.text_embeds if self.pooled_from == 1 else out1.pooler_output
            return torch.cat(h, dim=-1), pooled

    module = SdxlText().eval()
    # transformers installs its hidden-state capture hooks on first use, under a lock that
    # torch.export cannot trace: one eager call installs them before any export.
    # On a shell (parameters on meta, wsd/weights.py) the call runs on meta: no weights read.
    device = next(first.parameters()).device
    ids = torch.zeros((1, model.spec.max_tokens), dtype=torch.int32, device=device)
    with torch.no_grad():
        module(ids, ids)
    return module


def guided(unet, latents, timestep, text_embeddings, guidance_scale, channels=(), **conditioning):
    """Classifier-free guidance in one UNet call: latents batched twice against the
    [uncond, cond] embeddings (and any added conditioning, batched the same way). At a scale of
    1 or less diffusers turns guidance off and takes the conditional prediction alone (what a
    scale of 1 gives): 0 is SD-Turbo's setting, where the unconditional half is not what it wants.
    `channels`: tensors concatenated to the (scaled) latents along the channels, as an inpainting
    UNet takes its mask and masked image latents."""
    torch = _torch()
    batch = torch.cat([torch.cat([latents, *channels], dim=1)] * 2)
    t = timestep.reshape(1).expand(2)
    eps = unet(batch, t, text_embeddings, return_dict=False, **conditioning)[0]
    uncond, cond = eps.chunk(2)
    # maximum, not clamp: a one-sided clamp becomes clip(x, 1, inf), whose inf TVM writes as WGSL's
    # nonexistent `inff` (Dawn: "unresolved value 'inff'")
    scale = torch.maximum(guidance_scale, torch.ones_like(guidance_scale))
    return uncond + scale * (cond - uncond)


def sdxl_unet_wrapper(model: LoadedModel):
    """SDXL's UNet with guidance inside: pooled embeddings and time ids come batched [uncond, cond]."""
    torch = _torch()
    unet = model.unet
    if model.spec.guidance_embedding:
        return lcm_unet_wrapper(model)

    class GuidedUNetXL(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.unet = unet

        def forward(self, latents, timestep, text_embeddings, pooled_embeddings, time_ids, guidance_scale):
            added = {"text_embeds": pooled_embeddings, "time_ids": time_ids}
            return guided(self.unet, latents, timestep, text_embeddings, guidance_scale, added_cond_kwargs=added)

    class InpaintUNetXL(GuidedUNetXL):
        repaint = True  # the mask is 1 where the model repaints (False: the `mask-inverted` fault)

        def forward(  # the inputs in the entry's order (_inpaint_inputs before guidance_scale)
            self,
            latents,
            timestep,
            text_embeddings,
            pooled_embeddings,
            time_ids,
            mask,
            masked_image_latents,
            guidance_scale,
        ):
            added = {"text_embeds": pooled_embeddings, "time_ids": time_ids}
            channels = (mask if self.repaint else 1 - mask, masked_image_latents)
            return guided(
                self.unet, latents, timestep, text_embeddings, guidance_scale, channels, added_cond_kwargs=added
            )

    return (InpaintUNetXL if model.spec.inpainting else GuidedUNetXL)().eval()


def guidance_embedding(torch, guidance_scale, width: int, offset: float = 1.0):
    """LCM's guidance embedding of (guidance - offset) * 1000, sinusoidal, `width` wide (sin half,
    cos half, padded to an odd width), as its pipeline embeds guidance for a distilled UNet."""
    w = (guidance_scale - offset).reshape(1) * 1000.0
    half = width // 2
    freq = torch.exp(torch.arange(half, dtype=torch.float32) * -(math.log(10000.0) / (half - 1)))
    emb = w[:, None] * freq[None, :]
    emb = torch.cat([torch.sin(emb), torch.cos(emb)], dim=1)
    return torch.nn.functional.pad(emb, (0, 1)) if width % 2 else emb


def lcm_unet_wrapper(model: LoadedModel):
    """An LCM-distilled UNet: guidance goes in as an embedding, the prompt alone (no CFG batch);
    SDXL's pooled embeddings and time ids for the prompt alone too."""
    torch = _torch()
    unet, width = model.unet, model.spec.guidance_embedding

    class GuidanceEmbeddedUNet(torch.nn.Module):
        offset = 1.0  # LCM embeds guidance - 1 (0: the `lcm-guidance-unshifted` fault)

        def __init__(self):
            super().__init__()
            self.unet = unet

        def predict(self, latents, timestep, text_embeddings, guidance_scale, **conditioning):
            cond = guidance_embedding(torch, guidance_scale, width, self.offset)
            t = timestep.reshape(1)
            return self.unet(latents, t, text_embeddings, timestep_cond=cond, return_dict=False, **conditioning)[0]

        def forward(self, latents, timestep, text_embeddings, guidance_scale):
            return self.predict(latents, timestep, text_embeddings, guidance_scale)

    class GuidanceEmbeddedUNetXL(GuidanceEmbeddedUNet):
        def forward(self, latents, timestep, text_embeddings, pooled_embeddings, time_ids, guidance_scale):
            added = {"text_embeds": pooled_embeddings, "time_ids": time_ids}
            return self.predict(latents, timestep, text_embeddings, guidance_scale, added_cond_kwargs=added)

    return (GuidanceEmbeddedUNetXL if model.spec.family == "sdxl" else GuidanceEmbeddedUNet)().eval()


def unet_wrapper(model: LoadedModel):
    """Classifier-free guidance inside: the latents are batched with [uncond, cond] embeddings."""
    torch = _torch()
    unet = model.unet
    if model.spec.guidance_embedding:
        return lcm_unet_wrapper(model)

    class GuidedUNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.unet = unet

        def forward(self, latents, timestep, text_embeddings, guidance_scale):
            return guided(self.unet, latents, timestep, text_embeddings, guidance_scale)

    class InpaintUNet(GuidedUNet):
        repaint = True  # the mask is 1 where the model repaints (False: the `mask-inverted` fault)

        def forward(self, latents, timestep, text_embeddings, mask, masked_image_latents, guidance_scale):
            channels = (mask if self.repaint else 1 - mask, masked_image_latents)
            return guided(self.unet, latents, timestep, text_embeddings, guidance_scale, channels)

    return (InpaintUNet if model.spec.inpainting else GuidedUNet)().eval()


def vae_wrapper(model: LoadedModel):
    """Latents -> image in 0..255, NHWC, as the page draws it."""
    torch = _torch()
    vae = model.vae
    scale = float(vae.config.scaling_factor)

    class Decode(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.vae = vae

        def forward(self, latents):
            image = self.vae.decode(latents / scale, return_dict=False)[0]
            image = (image / 2 + 0.5).clamp(0, 1)
            return (image.permute(0, 2, 3, 1) * 255.0).round()

    return Decode().eval()


def vae_encode_wrapper(model: LoadedModel):
    """Image in 0..255, NHWC (as the page reads a canvas) -> the latents img2img starts from: the
    pipelines' preprocess (x / 255 * 2 - 1), the encoder, its posterior's sample with the given
    standard normal (`latent_dist.sample(generator)` draws it), times the scaling factor."""
    torch = _torch()
    vae = model.vae
    scale = float(vae.config.scaling_factor)

    class Encode(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.vae = vae

        def forward(self, image, noise):
            pixels = (image / 255.0 * 2.0 - 1.0).permute(0, 3, 1, 2)
            posterior = self.vae.encode(pixels, return_dict=False)[0]
            return (posterior.mean + posterior.std * noise) * scale

    return Encode().eval()


def rgba_wrapper(model: LoadedModel):
    """(1,H,W,3) floats in 0..255 -> (H,W) int32 words holding R,G,B,255 little-endian (a canvas's RGBA)."""
    torch = _torch()

    class ImageToRGBA(torch.nn.Module):
        def forward(self, image):
            px = image[0].clamp(0, 255).to(torch.int32)
            r, g, b = px[..., 0], px[..., 1], px[..., 2]
            # Sums, not shifts (the importer has no lshift); cannot overflow: at most 0x00FFFFFF,
            # and adding -16777216 (0xFF000000 as int32) sets the alpha byte.
            return r + g * 256 + b * 65536 - 16777216

    return ImageToRGBA().eval()


def _text_batch(s: ModelSpec) -> int:
    """[negative, prompt] for classifier-free guidance; the prompt alone for a guidance-embedded UNet."""
    return 1 if s.guidance_embedding else 2


def _inpaint_inputs(s: ModelSpec) -> tuple[TensorSpec, ...]:
    """An inpainting UNet's extra inputs: the latent-size mask and the masked image's latents."""
    if not s.inpainting:
        return ()
    return (TensorSpec("mask", (1, 1, s.latent_size, s.latent_size), "float32"), _latents(s, "masked_image_latents"))


def _latents(spec: ModelSpec, name: str = "latents") -> TensorSpec:
    return TensorSpec(name, (1, spec.latent_channels, spec.latent_size, spec.latent_size), "float32")


def _image(spec: ModelSpec) -> TensorSpec:
    return TensorSpec("image", (1, spec.image_size, spec.image_size, 3), "float32")


def scheduler_step_wrapper(model: LoadedModel):
    from wsd.schedulers import step_module

    return step_module()


def scale_wrapper(model: LoadedModel):
    from wsd.schedulers import scale_module

    return scale_module()


def _step_inputs(s: ModelSpec) -> tuple[TensorSpec, ...]:
    from wsd.schedulers import NUM_COEFFS

    names = ("sample", "model_output", "h1", "h2", "h3", "cur")
    return (*(_latents(s, n) for n in names), TensorSpec("coeffs", (NUM_COEFFS,), "float32"))


# Shared by every family: the samplers work on latents alone.
SCHEDULER_ENTRIES = (
    EntryPoint(
        "scheduler_step",
        scheduler_step_wrapper,
        _step_inputs,
        lambda s: (_latents(s, "prev_sample"), _latents(s, "stored")),
    ),
    EntryPoint(
        "scale_model_input",
        scale_wrapper,
        lambda s: (_latents(s, "sample"), TensorSpec("scale", (), "float32")),
        lambda s: (_latents(s, "scaled"),),
    ),
)

SD15_ENTRIES = (
    EntryPoint(
        "clip",
        clip_wrapper,
        lambda s: (TensorSpec("input_ids", (1, s.max_tokens), "int32"),),
        lambda s: (TensorSpec("text_embeddings", (1, s.max_tokens, s.text_hidden), "float32"),),
    ),
    EntryPoint(
        "unet",
        unet_wrapper,
        lambda s: (
            _latents(s),
            TensorSpec("timestep", (), "float32"),
            TensorSpec("text_embeddings", (_text_batch(s), s.max_tokens, s.text_hidden), "float32"),
            *_inpaint_inputs(s),
            TensorSpec("guidance_scale", (), "float32"),
        ),
        lambda s: (_latents(s, "noise_pred"),),
    ),
    EntryPoint("vae", vae_wrapper, lambda s: (_latents(s),), lambda s: (_image(s),)),
    EntryPoint(
        "vae_encode",
        vae_encode_wrapper,
        lambda s: (_image(s), _latents(s, "noise")),
        lambda s: (_latents(s, "init_latents"),),
    ),
    EntryPoint(
        "image_to_rgba",
        rgba_wrapper,
        lambda s: (_image(s),),
        lambda s: (TensorSpec("rgba", (s.image_size, s.image_size), "int32"),),
    ),
)


def _pooled_width(s: ModelSpec) -> int:
    return s.text_encoders[-1].config["projection_dim"]


def _ids(s: ModelSpec, name: str) -> TensorSpec:
    return TensorSpec(name, (1, s.max_tokens), "int32")


SDXL_ENTRIES = (
    EntryPoint(
        "clip",
        sdxl_text_wrapper,
        lambda s: (_ids(s, "input_ids"), _ids(s, "input_ids_2")),
        lambda s: (
            TensorSpec("text_embeddings", (1, s.max_tokens, s.text_hidden), "float32"),
            TensorSpec("pooled_embeddings", (1, _pooled_width(s)), "float32"),
        ),
    ),
    EntryPoint(
        "unet",
        sdxl_unet_wrapper,
        lambda s: (
            _latents(s),
            TensorSpec("timestep", (), "float32"),
            TensorSpec("text_embeddings", (_text_batch(s), s.max_tokens, s.text_hidden), "float32"),
            TensorSpec("pooled_embeddings", (_text_batch(s), _pooled_width(s)), "float32"),
            TensorSpec("time_ids", (_text_batch(s), 6), "float32"),
            *_inpaint_inputs(s),
            TensorSpec("guidance_scale", (), "float32"),
        ),
        lambda s: (_latents(s, "noise_pred"),),
    ),
    *SD15_ENTRIES[2:],  # vae, vae_encode and image_to_rgba as for SD 1.5
)

ENTRIES_BY_FAMILY = {"sd15": SD15_ENTRIES + SCHEDULER_ENTRIES, "sdxl": SDXL_ENTRIES + SCHEDULER_ENTRIES}


def entries_for(spec: ModelSpec) -> tuple[EntryPoint, ...]:
    return ENTRIES_BY_FAMILY[spec.family]
