"""diffusers' own pipeline, `DiffusionPipeline.from_pretrained(folder)` (StableDiffusionPipeline or
StableDiffusionXLPipeline, as model_index.json says), for the page's seed and settings: what the
app's image must equal. It runs conformance.reference (no `wsd` code), so a bug in the product's
helpers cannot reach this side of the comparison."""

from __future__ import annotations

import numpy as np


def image(folder, manifest: dict, settings: dict) -> np.ndarray:
    """(H, W, 3) uint8-valued float64 pixels, from the page's seeded noise (lib/pipeline.js)."""
    import torch

    from conformance.reference import ReferenceModel
    from conformance.stages import page_noise

    ref = ReferenceModel(folder, manifest["image_size"])
    pipe = ref.with_sampler(settings.get("scheduler") or manifest["default_scheduler"])
    shape = manifest["latent_shape"]
    noise = torch.from_numpy(page_noise(settings["seed"], int(np.prod(shape))).reshape(shape))
    guidance = settings.get("guidance")
    with torch.no_grad():
        out = pipe(
            settings["prompt"],
            negative_prompt=settings.get("negative") or None,
            num_inference_steps=settings["steps"],
            guidance_scale=manifest["generation"]["default_guidance"] if guidance is None else guidance,
            latents=noise,
            height=ref.image_size,
            width=ref.image_size,
            output_type="np",
        ).images[0]
    return (out * 255.0).round()
