"""SD 1.5 and its tiny twin: the same block types at widths a test can afford."""

from __future__ import annotations

from wsd.models.spec import Component, ModelSpec, Scheduler

UNET_KEYS = (
    "in_channels",
    "out_channels",
    "block_out_channels",
    "down_block_types",
    "up_block_types",
    "cross_attention_dim",
    "layers_per_block",
    "norm_num_groups",
)
VAE_KEYS = ("latent_channels", "block_out_channels", "up_block_types", "scaling_factor", "norm_num_groups")
CLIP_KEYS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size", "max_position_embeddings")

DIFFUSERS_WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")
TRANSFORMERS_WEIGHTS = ("model.safetensors", "pytorch_model.bin")

# The scheduler config SD 1.5 ships (PNDM); the other samplers are built from it.
SD15_SCHEDULER = {
    "_class_name": "PNDMScheduler",
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "clip_sample": False,
}

SCHEDULERS = (
    Scheduler("dpm-solver++", "DPMSolverMultistepScheduler", 20, {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    Scheduler("pndm", "PNDMScheduler", 50),
    Scheduler("euler", "EulerDiscreteScheduler", 30),
    Scheduler("ddim", "DDIMScheduler", 50),
    # few-step samplers that add noise each step (SD-Turbo-style Euler Ancestral, LCM)
    Scheduler("euler-a", "EulerAncestralDiscreteScheduler", 20),
    Scheduler("lcm", "LCMScheduler", 4),
)


def _unet(widths, layers, heads, groups, cross_dim, sample):
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
            "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
            "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
            "cross_attention_dim": cross_dim,
            "attention_head_dim": heads,
            "norm_num_groups": groups,
            "flip_sin_to_cos": True,
            "freq_shift": 0,
        },
        DIFFUSERS_WEIGHTS,
        UNET_KEYS,
    )


def vae(widths, layers, groups, sample, scaling_factor=0.18215, **extra):
    """An AutoencoderKL config: one encoder/decoder block per width; SDXL's differs in its
    scaling factor (0.13025) and `force_upcast`."""
    return Component(
        "vae",
        "diffusers",
        "AutoencoderKL",
        {
            "in_channels": 3,
            "out_channels": 3,
            "latent_channels": 4,
            "block_out_channels": list(widths),
            "layers_per_block": layers,
            "down_block_types": ["DownEncoderBlock2D"] * len(widths),
            "up_block_types": ["UpDecoderBlock2D"] * len(widths),
            "norm_num_groups": groups,
            "sample_size": sample,
            "scaling_factor": scaling_factor,
            **extra,
        },
        DIFFUSERS_WEIGHTS,
        VAE_KEYS,
    )


def _clip(hidden, layers, heads, inner, vocab):
    return Component(
        "text_encoder",
        "transformers",
        "CLIPTextModel",
        {
            "hidden_size": hidden,
            "intermediate_size": inner,
            "num_hidden_layers": layers,
            "num_attention_heads": heads,
            "vocab_size": vocab,
            "max_position_embeddings": 77,
            "hidden_act": "quick_gelu",
            "projection_dim": hidden,
            # SD 1.5's text_encoder/config.json values (token ids, not secrets).
            "bos_token_id": 0,  # nosec B105
            "eos_token_id": 2,  # nosec B105
            "pad_token_id": 1,  # nosec B105
        },
        TRANSFORMERS_WEIGHTS,
        CLIP_KEYS,
    )


def _sd15_like(name: str, image_size: int, unet: Component, vae: Component, clip: Component) -> ModelSpec:
    """An SD 1.5-family spec: one CLIP text encoder, SD 1.5's scheduler config and samplers."""
    return ModelSpec(
        name=name,
        family="sd15",
        image_size=image_size,
        unet=unet,
        vae=vae,
        text_encoders=(clip,),
        tokenizers=("tokenizer",),
        scheduler_config=SD15_SCHEDULER,
        schedulers=SCHEDULERS,
        default_scheduler="dpm-solver++",
    )


SD15 = _sd15_like(
    "sd15",
    512,
    _unet((320, 640, 1280, 1280), 2, 8, 32, 768, 64),
    vae((128, 256, 512, 512), 2, 32, 512),
    _clip(768, 12, 12, 3072, 49408),
)

SD15_TINY = _sd15_like(
    "sd15-tiny",
    64,
    _unet((32, 32, 64, 64), 1, 8, 8, 32, 8),
    vae((16, 16, 32, 32), 1, 8, 64),
    _clip(32, 2, 4, 64, 1024),
)
