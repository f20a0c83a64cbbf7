"""diffusers' own pipeline, `DiffusionPipeline.from_pretrained(folder)` (StableDiffusionPipeline or
StableDiffusionXLPipeline, as model_index.json says), for the page's seed and settings: what the
app's image must equal (the e2e tests compare against it, not against our harness)."""

from __future__ import annotations

import numpy as np


def image(folder, manifest: dict, settings: dict) -> np.ndarray:
    """(H, W, 3) uint8-valued float64 pixels, from the page's seeded noise (lib/pipeline.js)."""
    import json
    from pathlib import Path

    import torch
    from diffusers import DiffusionPipeline

    from conformance.stages import page_noise
    from wsd import models
    from wsd.schedulers import make_scheduler

    sdxl = json.loads((Path(folder) / "model_index.json").read_text())["_class_name"].startswith("StableDiffusionXL")
    extra = {"add_watermarker": False} if sdxl else {}
    pipe = DiffusionPipeline.from_pretrained(str(folder), local_files_only=True, **extra)  # nosec B615 (local)
    name = settings.get("scheduler") or manifest["default_scheduler"]
    pipe.scheduler = make_scheduler(models.get("sdxl" if sdxl else "sd15").scheduler(name), dict(pipe.scheduler.config))
    pipe.set_progress_bar_config(disable=True)
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
            height=manifest["image_size"],
            width=manifest["image_size"],
            output_type="np",
        ).images[0]
    return (out * 255.0).round()
