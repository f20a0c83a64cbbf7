"""A user's diffusers folder decides the model: its configs become the spec the build uses.

The presets (wsd/models/sd15.py) supply what a folder does not say: the family's component
classes, weight file names, required keys and samplers. Everything with a shape comes from the
folder: text width, latent channels, the VAE's scale factor, the image size (the UNet's
`sample_size` x the VAE scale unless given), the scheduler config. Everything the build cannot
do is refused here, before any tracing, as one line naming the file, the key, the value found
and what is supported.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from wsd.errors import ModelFolderError
from wsd.models.folder import SCHEDULER_FILE, read_json
from wsd.models.spec import Component, ModelSpec
from wsd.schedulers import PREDICTION_TYPES  # what the samplers' tables are derived for

# model_index.json `_class_name` -> our family.
PIPELINE_FAMILIES = {
    "StableDiffusionPipeline": "sd15",
    "StableDiffusionXLPipeline": "sdxl",
    "StableDiffusionInpaintPipeline": "sd15",
    "StableDiffusionXLInpaintPipeline": "sdxl",
    "LatentConsistencyModelPipeline": "sd15",
}
# A guidance-distilled UNet (LCM): guidance is an embedding (time_cond_proj_dim), no CFG batch; its
# pipeline runs LCMScheduler alone (its loop reads LCM's `denoised`), at LCM's default guidance.
LCM_PIPELINE = "LatentConsistencyModelPipeline"
LCM_DEFAULT_GUIDANCE = 8.5
# the pipelines that embed guidance for such a UNet (`time_cond_proj_dim`) instead of a CFG batch:
# LCM's own, and the text-to-image ones (LCM-SDXL ships as StableDiffusionXLPipeline + LCMScheduler)
GUIDANCE_EMBEDDING_PIPELINES = (LCM_PIPELINE, "StableDiffusionPipeline", "StableDiffusionXLPipeline")
# the pipelines whose UNet takes the mask and the masked image's latents beside the latents
INPAINT_PIPELINES = {"sd15": "StableDiffusionInpaintPipeline", "sdxl": "StableDiffusionXLInpaintPipeline"}
UNSUPPORTED_UNET_KEYS = {  # UNet options whose conditioning our entry points do not feed
    "addition_embed_type": None,  # the family's own (SDXL: text_time) is what its entry points feed
    "class_embed_type": None,
    "encoder_hid_dim_type": None,
    "time_cond_proj_dim": None,  # but for an LCM folder (LCM_PIPELINE)
}


def _fail(path: Path, key: str, value, supported: str) -> ModelFolderError:
    return ModelFolderError(f"{path}: {key} is {value!r}; supported: {supported}")


def family_of(folder: Path) -> str:
    """The family model_index.json names (`_class_name`)."""
    path = Path(folder) / "model_index.json"
    index = read_json(path)
    cls = index.get("_class_name")
    if not isinstance(cls, str):
        raise _fail(path, "_class_name", cls, ", ".join(PIPELINE_FAMILIES))
    if cls in PIPELINE_FAMILIES:
        return PIPELINE_FAMILIES[cls]
    raise _fail(path, "_class_name", cls, ", ".join(PIPELINE_FAMILIES))


def default_name(folder: Path) -> str:
    """A dist folder name from the model folder's name: letters, digits, '-', '_', '.'."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(folder).resolve().name).strip("-.") or "model"
    return name[:64]


def _component(preset: Component, folder: Path) -> tuple[Component, Path]:
    path = folder / preset.subfolder / "config.json"
    if not path.parent.is_dir():
        raise ModelFolderError(f"{path.parent}: subfolder is missing (a diffusers folder has {preset.subfolder}/)")
    config = read_json(path)
    if preset.library == "diffusers":
        found = config.get("_class_name")
        if found is not None and (not isinstance(found, str) or found != preset.class_name):
            raise _fail(path, "_class_name", found, preset.class_name)
    else:
        arch = config.get("architectures") or [preset.class_name]
        if not isinstance(arch, list) or preset.class_name not in [a for a in arch if isinstance(a, str)]:
            raise _fail(path, "architectures", arch, f"[{preset.class_name!r}]")
    for key in preset.required_keys:
        if key not in config:
            raise ModelFolderError(f"{path}: required key {key!r} is missing")
    return dataclasses.replace(preset, config=config), path


def _positive_int(path: Path, key: str, value) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise _fail(path, key, value, "a positive integer")
    return value


def _check_text_time(uc: dict, unet_path: Path, pooled_encoder) -> None:
    """SDXL's added conditioning: 6 time ids x addition_time_embed_dim + the pooled width."""
    enc, enc_path = pooled_encoder
    time_dim = _positive_int(unet_path, "addition_time_embed_dim", uc.get("addition_time_embed_dim"))
    pooled = _positive_int(enc_path, "projection_dim", enc.config.get("projection_dim"))
    want = 6 * time_dim + pooled
    found = uc.get("projection_class_embeddings_input_dim")
    if found != want:
        raise _fail(
            unet_path,
            "projection_class_embeddings_input_dim",
            found,
            f"{want} (6 time ids x addition_time_embed_dim {time_dim} + projection_dim {pooled} of {enc_path})",
        )


def spec_from_folder(
    folder: Path, preset: ModelSpec, name: str | None = None, image_size: int | None = None
) -> ModelSpec:
    """The spec of a diffusers folder, checked. `preset` is the family's built-in spec."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelFolderError(f"{folder}: model folder does not exist")
    pipeline = preset.pipeline_class
    if (folder / "model_index.json").is_file():
        family = family_of(folder)
        pipeline = read_json(folder / "model_index.json")["_class_name"]
        if family != preset.family:
            raise _fail(
                folder / "model_index.json",
                "_class_name",
                read_json(folder / "model_index.json").get("_class_name"),
                f"a {preset.family} pipeline for --model {preset.name}",
            )
    unet, unet_path = _component(preset.unet, folder)
    vae, vae_path = _component(preset.vae, folder)
    encoders = [_component(c, folder) for c in preset.text_encoders]
    uc, vc = unet.config, vae.config

    for key, allowed in UNSUPPORTED_UNET_KEYS.items():
        allowed = preset.unet.config.get(key, allowed)
        if key == "time_cond_proj_dim" and uc.get(key) is not None and pipeline in GUIDANCE_EMBEDDING_PIPELINES:
            _positive_int(unet_path, key, uc.get(key))  # LCM's guidance embedding width
        elif uc.get(key) != allowed:
            why = f"{allowed} for family {preset.family}"
            if key == "time_cond_proj_dim":
                pipelines = ", ".join(GUIDANCE_EMBEDDING_PIPELINES)
                why += f" (a guidance-embedded UNet needs model_index.json's _class_name one of {pipelines})"
            raise _fail(unet_path, key, uc.get(key), why)
    if preset.unet.config.get("addition_embed_type") == "text_time":
        _check_text_time(uc, unet_path, encoders[-1])
    for key in ("block_out_channels",):
        for path, cfg in ((unet_path, uc), (vae_path, vc)):
            if not isinstance(cfg.get(key), list) or not cfg[key]:
                raise _fail(path, key, cfg.get(key), "a non-empty list of channel counts")
    width = 0
    for enc, path in encoders:
        width += _positive_int(path, "hidden_size", enc.config.get("hidden_size"))
    cross = uc.get("cross_attention_dim")
    if cross != width:
        paths = " + ".join(str(p) for _, p in encoders)
        raise _fail(unet_path, "cross_attention_dim", cross, f"{width}, the text width of {paths}")
    latent = _positive_int(vae_path, "latent_channels", vc.get("latent_channels"))
    if uc.get("out_channels") != latent:
        raise _fail(
            unet_path, "out_channels", uc.get("out_channels"), f"{latent}, the VAE's latent_channels ({vae_path})"
        )
    inpaint = INPAINT_PIPELINES[preset.family]
    if pipeline == inpaint and uc.get("in_channels") != 2 * latent + 1:
        why = f"{2 * latent + 1} for {inpaint} (latents, mask, masked image latents); 4-channel inpainting: no"
        raise _fail(unet_path, "in_channels", uc.get("in_channels"), why)
    if pipeline != inpaint and uc.get("in_channels") != latent:
        why = f"{latent}, the VAE's latent_channels ({vae_path}); {2 * latent + 1} for model_index.json's {inpaint}"
        raise _fail(unet_path, "in_channels", uc.get("in_channels"), why)

    vae_scale = 2 ** (len(vc["block_out_channels"]) - 1)
    unet_down = 2 ** (len(uc["block_out_channels"]) - 1)
    if image_size is None:
        sample = _positive_int(unet_path, "sample_size", uc.get("sample_size"))
        image_size = sample * vae_scale
    multiple = vae_scale * unet_down
    if not isinstance(image_size, int) or image_size <= 0 or image_size % multiple:
        raise ModelFolderError(
            f"image size {image_size}: must be a positive multiple of {multiple} (the VAE scale {vae_scale} "
            f"from {vae_path} block_out_channels x the UNet's {unet_down}x downsampling from {unet_path})"
        )

    sched_path = folder / SCHEDULER_FILE
    sched = read_json(sched_path)
    prediction = sched.get("prediction_type", "epsilon")
    if prediction not in PREDICTION_TYPES:
        raise _fail(sched_path, "prediction_type", prediction, ", ".join(PREDICTION_TYPES))
    for key in ("thresholding", "clip_sample"):  # both make a step non-linear in the sample
        if sched.get(key):
            raise _fail(sched_path, key, sched[key], "false (the samplers' steps are linear)")
    train = sched.get("num_train_timesteps", 1000)
    _positive_int(sched_path, "num_train_timesteps", train)

    return dataclasses.replace(
        preset,
        name=name or default_name(folder),
        image_size=image_size,
        unet=unet,
        vae=vae,
        text_encoders=tuple(c for c, _ in encoders),
        scheduler_config=sched,
        pipeline_class=pipeline,
        **_lcm_settings(preset) if uc.get("time_cond_proj_dim") is not None else {},
    )


def _lcm_settings(preset: ModelSpec) -> dict:
    """An LCM folder's sampler is LCM alone (its pipeline's loop is LCM's), at LCM's guidance."""
    lcm = preset.scheduler("lcm")
    return {"schedulers": (lcm,), "default_scheduler": lcm.name, "default_guidance": LCM_DEFAULT_GUIDANCE}
