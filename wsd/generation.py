"""The generation loop's plan, written once into the manifest for every runner of the loop.

The page (web/lib/pipeline.js) and the native backend (conformance/backends.py) read the
same plan: which tokenizers feed which text entry point, which of its outputs are batched
[negative, prompt] for the UNet, constants the UNet takes (SDXL's time ids), and whether an
empty negative prompt is zeros (SDXL's `force_zeros_for_empty_prompt`). The UNet's inputs
are bound by name from the entry-point signatures, so a family adds no code to either loop.
"""

from __future__ import annotations

from pathlib import Path

from wsd.errors import ModelFolderError

# Inputs every denoising call gets from the loop itself; every other UNet input must be a
# text output or a plan constant.
LOOP_INPUTS = ("latents", "timestep", "guidance_scale")


def time_ids(image_size: int) -> list[float]:
    """SDXL's add_time_ids as diffusers makes them by default: original size = target size =
    the image size, crop (0, 0); the same for the negative and the positive half."""
    one = [float(image_size), float(image_size), 0.0, 0.0, float(image_size), float(image_size)]
    return one + one


def plan(spec, model, entries: dict) -> dict:
    """The manifest's `generation` section. `entries`: name -> the manifest's entry-point record."""
    tokenizers = []
    for sub, tok in zip(spec.tokenizers, model.tokenizers, strict=True):
        pad = tok.pad_token
        if pad is None or pad not in tok.get_vocab():
            raise ModelFolderError(f"{Path(model.folder) / sub}: pad token {pad!r} is not in vocab.json")
        tokenizers.append({"path": sub, "pad": pad, "max_length": spec.max_tokens})
    constants = {}
    if spec.family == "sdxl":
        rows = 1 if spec.guidance_embedding else 2  # [uncond, cond], or the prompt's alone (LCM)
        constants["time_ids"] = {"shape": [rows, 6], "dtype": "float32", "data": time_ids(spec.image_size)[: 6 * rows]}
    out = {
        "text": {
            "entry": "clip",
            "tokenizers": tokenizers,
            "zero_empty_negative": zero_empty_negative(spec, model),
            # [negative, prompt] batches for classifier-free guidance; false: the prompt alone (LCM)
            "cfg": not spec.guidance_embedding,
        },
        "denoise": {"entry": "unet", "scale_entry": "scale_model_input", "step_entry": "scheduler_step"},
        "decode": ["vae", "image_to_rgba"],
        # img2img: the image's latents (entry), then the sampler's add_noise as one scheduler_step
        "encode": "vae_encode",
        "constants": constants,
        "default_guidance": spec.default_guidance,
    }
    if spec.inpainting:  # the UNet's mask and masked image latents come from the image and the mask
        out["inpaint"] = {"inputs": ["mask", "masked_image_latents"]}
    check(out, entries)
    return out


def pixel_mask(rgb):
    """An inpainting mask as diffusers' mask processor reads a picture: its luma (PIL's "L":
    R 299, G 587, B 114 per mille, rounded) binarized at half, 1 where the model repaints
    (web/lib/pipeline.js pixelMask)."""
    import numpy as np

    rgb = np.asarray(rgb, "int64")
    luma = rgb if rgb.ndim == 2 else (rgb[..., 0] * 19595 + rgb[..., 1] * 38470 + rgb[..., 2] * 7471 + 0x8000) >> 16
    return (luma >= 128).astype("float32")  # L / 255 >= 0.5


def zero_empty_negative(spec, model) -> bool:
    """SDXL pipelines default force_zeros_for_empty_prompt to true; model_index.json may say otherwise."""
    if spec.family != "sdxl":
        return False
    index = Path(model.folder) / "model_index.json"
    if not index.is_file():
        return True
    from wsd.models.folder import read_json

    return bool(read_json(index).get("force_zeros_for_empty_prompt", True))


def check(generation: dict, entries: dict) -> None:
    """Every UNet input has a source, and the text entry takes one id tensor per tokenizer."""
    text = entries.get(generation["text"]["entry"])
    unet = entries.get(generation["denoise"]["entry"])
    if text is None or unet is None:
        return  # a partial build (--entry): no generation loop to check
    takes, tokenizers = len(text["inputs"]), len(generation["text"]["tokenizers"])
    if takes != tokenizers:
        raise ValueError(f"the text entry takes {takes} id tensors for {tokenizers} tokenizers")
    inpaint = generation.get("inpaint", {}).get("inputs", [])
    sources = {*LOOP_INPUTS, *(o["name"] for o in text["outputs"]), *generation["constants"], *inpaint}
    missing = [i["name"] for i in unet["inputs"] if i["name"] not in sources]
    if missing:
        raise ValueError(f"UNet input(s) {missing} have no source in the generation plan")
