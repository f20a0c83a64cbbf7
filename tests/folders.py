"""Diffusers folders that are none of the built-in presets, made with seeded random weights.

Each is the sd15-tiny (or sdxl-tiny) preset with some configs changed the way real checkpoints differ, written
by the same `write_random` the presets use and then read back as a user's folder would be.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from wsd import models
from wsd.models.folder import write_random


def _with(spec, **changes):
    """A spec whose component configs are updated: changes = {"unet": {...}, "text_encoder_2": {...}, ...}."""
    comps = {c.subfolder: c for c in spec.components}
    new = {sub: dataclasses.replace(comps[sub], config={**comps[sub].config, **cfg}) for sub, cfg in changes.items()}
    return dataclasses.replace(
        spec,
        unet=new.get("unet", spec.unet),
        vae=new.get("vae", spec.vae),
        text_encoders=tuple(new.get(c.subfolder, c) for c in spec.text_encoders),
    )


# the folders of other model kinds (tests/test_conformance/test_model_kinds.py)
KINDS = ("inpaint", "sdxl-inpaint", "lcm", "sdxl-lcm")

# LCMScheduler's config as LCM-distilled folders (LCM's own, LCM-SDXL) ship it
LCM_SCHEDULER = {
    "_class_name": "LCMScheduler",
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "original_inference_steps": 50,
    "prediction_type": "epsilon",
    "set_alpha_to_one": True,
    "steps_offset": 1,
    "timestep_spacing": "leading",
    "timestep_scaling": 10.0,
    "clip_sample": False,
}


def variants() -> dict:
    tiny = models.get("sd15-tiny")
    xl = models.get("sdxl-tiny")
    return {
        # inpainting UNets (StableDiffusion(XL)InpaintPipeline): 9 input channels, the latents, the
        # mask and the masked image's latents
        "inpaint": _with(
            dataclasses.replace(tiny, pipeline_class="StableDiffusionInpaintPipeline"),
            unet={"in_channels": 9, "out_channels": 4},
        ),
        "sdxl-inpaint": _with(
            dataclasses.replace(xl, pipeline_class="StableDiffusionXLInpaintPipeline"),
            unet={"in_channels": 9, "out_channels": 4},
        ),
        # an LCM-distilled UNet (LatentConsistencyModelPipeline): guidance as an embedding of
        # time_cond_proj_dim, no CFG batch, LCMScheduler as LCM folders ship it
        "lcm": _with(
            dataclasses.replace(tiny, pipeline_class="LatentConsistencyModelPipeline", scheduler_config=LCM_SCHEDULER),
            unet={"time_cond_proj_dim": 32},
        ),
        # LCM-SDXL as it ships: StableDiffusionXLPipeline, LCMScheduler, a UNet with time_cond_proj_dim
        # (the pipeline embeds guidance and runs the prompt alone, pooled embeddings and time ids too)
        "sdxl-lcm": _with(dataclasses.replace(xl, scheduler_config=LCM_SCHEDULER), unet={"time_cond_proj_dim": 32}),
        # SDXL-family: a wider second encoder (48) with its own projection width (40), so the
        # UNet's cross-attention (32 + 48) and added-conditioning input (6 x 16 + 40) differ too
        "sdxl-wide-second": _with(
            xl,
            text_encoder_2={"hidden_size": 48, "projection_dim": 40, "num_attention_heads": 4},
            unet={
                "cross_attention_dim": 80,
                "addition_time_embed_dim": 16,
                "projection_class_embeddings_input_dim": 6 * 16 + 40,
            },
        ),
        # every SD 1.5-family axis a real checkpoint differs on, changed at once, so one folder
        # is built, gated on both backends and generated from (one build instead of five):
        # a narrower text encoder (24 wide) with a UNet whose cross-attention matches it; SD 2-style
        # attention (linear projections, upcast attention, head counts per block); a UNet of three
        # levels instead of four; a VAE of three levels (scale 4: 8x8 latents make 32x32 images);
        # an SD 2.x 768-style sampler config: the UNet predicts the velocity, with zero terminal SNR
        # (SD 1.5's published keys otherwise: PNDM, no timestep_spacing)
        "reshaped": _with(
            dataclasses.replace(
                tiny,
                scheduler_config={
                    **tiny.scheduler_config,
                    "prediction_type": "v_prediction",
                    "rescale_betas_zero_snr": True,
                },
            ),
            text_encoder={"hidden_size": 24, "projection_dim": 24, "num_attention_heads": 4},
            unet={
                "cross_attention_dim": 24,
                "use_linear_projection": True,
                "upcast_attention": True,
                "attention_head_dim": [2, 4, 4],
                "block_out_channels": [32, 64, 64],
                "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
                "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
            },
            vae={
                "block_out_channels": [16, 16, 32],
                "down_block_types": ["DownEncoderBlock2D"] * 3,
                "up_block_types": ["UpDecoderBlock2D"] * 3,
                "sample_size": 32,
            },
        ),
    }


def make(name: str, root: Path, seed: int = 7) -> Path:
    folder = Path(root) / name
    if not (folder / "model_index.json").is_file():
        write_random(variants()[name], folder, seed)
    return folder
