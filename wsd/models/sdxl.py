"""SDXL base 1.0 and its tiny twin: two text encoders, pooled embeddings and time ids.

The tiny twin keeps every block and conditioning type of SDXL (text_time added
conditioning, linear projections in the transformers, several transformer layers per
block, a CLIPTextModelWithProjection second encoder whose tokenizer pads with "!") at
widths a test can afford; its sizes follow diffusers' own SDXL fast tests.
"""

from __future__ import annotations

from wsd.models.sd15 import CLIP_KEYS, DIFFUSERS_WEIGHTS, TRANSFORMERS_WEIGHTS, UNET_KEYS, vae
from wsd.models.spec import Component, ModelSpec, Scheduler

SDXL_UNET_KEYS = (*UNET_KEYS, "addition_embed_type", "addition_time_embed_dim", "projection_class_embeddings_input_dim")
TIME_IDS = 6  # original size (2), crop top-left (2), target size (2)

# SDXL base 1.0's scheduler/scheduler_config.json: Euler, "leading" spacing.
SDXL_SCHEDULER = {
    "_class_name": "EulerDiscreteScheduler",
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "interpolation_type": "linear",
    "prediction_type": "epsilon",
    "sample_max_value": 1.0,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "timestep_spacing": "leading",
    "trained_betas": None,
    "use_karras_sigmas": False,
    "clip_sample": False,
}

SCHEDULERS = (
    Scheduler("euler", "EulerDiscreteScheduler", 30),
    Scheduler("dpm-solver++", "DPMSolverMultistepScheduler", 20, {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    Scheduler("ddim", "DDIMScheduler", 50),
    Scheduler("pndm", "PNDMScheduler", 50, {"skip_prk_steps": True}),
    Scheduler("euler-a", "EulerAncestralDiscreteScheduler", 20),
    Scheduler("lcm", "LCMScheduler", 4),
)


def _unet(widths, layers, heads, transformer_layers, groups, cross_dim, time_dim, pooled_dim, sample):
    return Component(
        "unet",
        "diffusers",
        "UNet2DConditionModel",
        {
            "sample_size": sample,
            "in_channels": 4,
            "out_channels": 4,
            "block_out_channels": list(widths),
            "layers_per_block": layers,
            "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
            "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
            "transformer_layers_per_block": list(transformer_layers),
            "attention_head_dim": list(heads),
            "use_linear_projection": True,
            "cross_attention_dim": cross_dim,
            "norm_num_groups": groups,
            "addition_embed_type": "text_time",
            "addition_time_embed_dim": time_dim,
            "projection_class_embeddings_input_dim": TIME_IDS * time_dim + pooled_dim,
            "flip_sin_to_cos": True,
            "freq_shift": 0,
            "upcast_attention": False,
        },
        DIFFUSERS_WEIGHTS,
        SDXL_UNET_KEYS,
    )


def _encoder(subfolder, class_name, hidden, layers, heads, inner, vocab, act, projection):
    return Component(
        subfolder,
        "transformers",
        class_name,
        {
            "hidden_size": hidden,
            "intermediate_size": inner,
            "num_hidden_layers": layers,
            "num_attention_heads": heads,
            "vocab_size": vocab,
            "max_position_embeddings": 77,
            "hidden_act": act,
            "projection_dim": projection,
            # SDXL's text_encoder(_2)/config.json values (token ids, not secrets).
            "bos_token_id": 0,  # nosec B105
            "eos_token_id": 2,  # nosec B105
            "pad_token_id": 1,  # nosec B105
        },
        TRANSFORMERS_WEIGHTS,
        CLIP_KEYS,
    )


def _sdxl_like(name, image_size, unet, vae, clip, clip2) -> ModelSpec:
    return ModelSpec(
        name=name,
        family="sdxl",
        image_size=image_size,
        unet=unet,
        vae=vae,
        text_encoders=(clip, clip2),
        tokenizers=("tokenizer", "tokenizer_2"),
        tokenizer_pads=("<|endoftext|>", "!"),
        scheduler_config=SDXL_SCHEDULER,
        schedulers=SCHEDULERS,
        default_scheduler="euler",
        pipeline_class="StableDiffusionXLPipeline",
        default_guidance=5.0,
    )


SDXL = _sdxl_like(
    "sdxl",
    1024,
    _unet((320, 640, 1280), 2, (5, 10, 20), (1, 2, 10), 32, 2048, 256, 1280, 128),
    vae((128, 256, 512, 512), 2, 32, 1024, scaling_factor=0.13025, force_upcast=True),
    _encoder("text_encoder", "CLIPTextModel", 768, 12, 12, 3072, 49408, "quick_gelu", 768),
    _encoder("text_encoder_2", "CLIPTextModelWithProjection", 1280, 32, 20, 5120, 49408, "gelu", 1280),
)

SDXL_TINY = _sdxl_like(
    "sdxl-tiny",
    64,
    _unet((32, 64, 64), 1, (2, 4, 4), (1, 2, 2), 8, 64, 8, 32, 8),
    vae((16, 16, 32, 32), 1, 8, 64, scaling_factor=0.13025, force_upcast=True),
    _encoder("text_encoder", "CLIPTextModel", 32, 2, 4, 64, 1024, "quick_gelu", 32),
    _encoder("text_encoder_2", "CLIPTextModelWithProjection", 32, 2, 4, 64, 1024, "gelu", 32),
)
