"""Each stage's reference: (ReferenceModel, inputs, params) -> {output name: array}.

Written as diffusers' own pipelines write each step (StableDiffusionPipeline.__call__,
StableDiffusionXLPipeline.__call__): `encode_prompt`, the UNet called for the unconditional
and the text half and the guidance formula, `vae.decode` and the image processor, the
sampler's `set_timesteps`/`scale_model_input`/`step` loop, and the pipeline itself.
Inputs arrive as the gate made them (the page's seeded noise, seeded tensors); the UNet's
named inputs are read by the names the built manifest gives them (data, not code).
"""

from __future__ import annotations

import inspect

import numpy as np


def _t(x):
    import torch

    return torch.from_numpy(np.ascontiguousarray(x))


def tokenizer(ref, prompts, params) -> dict:
    """transformers' CLIPTokenizer as encode_prompt calls it: padded and cut at model_max_length."""
    out = {}
    for k, tok in enumerate(ref.tokenizers):
        ids = tok(list(prompts), padding="max_length", max_length=tok.model_max_length, truncation=True).input_ids
        out["ids" if k == 0 else f"ids_{k + 1}"] = np.asarray(ids, "int32")
    return out


def clip(ref, inputs, params) -> dict:
    """The pipeline's own `encode_prompt` for the prompt the candidate's ids were made from."""
    import torch

    with torch.no_grad():
        got = ref.pipe.encode_prompt(
            params["prompt"], device="cpu", num_images_per_prompt=1, do_classifier_free_guidance=False
        )
    if ref.sdxl:
        embeddings, _, pooled, _ = got
        return {"embeddings": embeddings.numpy(), "pooled": pooled.numpy()}
    return {"embeddings": got[0].numpy()}


def unet(ref, inputs: dict, params) -> dict:
    """One denoising prediction as the pipeline's loop makes it: the embeddings batched
    [negative, prompt]; with guidance > 1 the UNet runs for both and
    `noise_pred_uncond + guidance_scale * (noise_pred_text - noise_pred_uncond)`, else on the
    prompt alone. SDXL's time ids are the pipeline's own (the candidate's input is ignored)."""
    import torch

    latents, t = _t(inputs["latents"]), _t(inputs["timestep"])
    guidance = float(inputs["guidance_scale"])
    time_ids = ref.add_time_ids() if ref.sdxl else None
    if "mask" in inputs:  # an inpainting UNet: latents, mask and masked image latents along the channels
        latents = torch.cat([latents, _t(inputs["mask"]), _t(inputs["masked_image_latents"])], dim=1)
    if ref.pipe.unet.config.time_cond_proj_dim is not None:  # LCM-distilled: the pipeline embeds guidance
        width = ref.pipe.unet.config.time_cond_proj_dim
        w_embedding = ref.pipe.get_guidance_scale_embedding(torch.tensor(guidance - 1).repeat(1), embedding_dim=width)
        extra = {}
        if ref.sdxl:  # the prompt's pooled embeddings and time ids alone: no CFG batch
            extra["added_cond_kwargs"] = {"text_embeds": _t(inputs["pooled_embeddings"]), "time_ids": time_ids}
        with torch.no_grad():
            embeddings = _t(inputs["text_embeddings"])
            noise_pred = ref.pipe.unet(
                latents, t, timestep_cond=w_embedding, encoder_hidden_states=embeddings, return_dict=False, **extra
            )[0]
        return {"noise_pred": noise_pred.numpy()}

    added = [None, None]
    if ref.sdxl:
        pooled_uncond, pooled_cond = _t(inputs["pooled_embeddings"]).chunk(2)
        added = [{"text_embeds": p, "time_ids": time_ids} for p in (pooled_uncond, pooled_cond)]
    uncond, cond = _t(inputs["text_embeddings"]).chunk(2)

    def predict(embeddings, added_cond):
        extra = {"added_cond_kwargs": added_cond} if added_cond is not None else {}
        return ref.pipe.unet(latents, t, encoder_hidden_states=embeddings, return_dict=False, **extra)[0]

    with torch.no_grad():
        noise_pred_text = predict(cond, added[1])
        if guidance > 1.0:
            noise_pred_uncond = predict(uncond, added[0])
            noise_pred = noise_pred_uncond + guidance * (noise_pred_text - noise_pred_uncond)
        else:
            noise_pred = noise_pred_text
    return {"noise_pred": noise_pred.numpy()}


def _pixels(ref, decoded):
    """The image processor's postprocess, then 0-255 as numpy_to_pil rounds it; NHWC."""
    image = ref.pipe.image_processor.postprocess(decoded, output_type="pt")
    return (image.permute(0, 2, 3, 1) * 255.0).round()


def vae(ref, inputs, params) -> dict:
    import torch

    vae = ref.pipe.vae
    with torch.no_grad():
        decoded = vae.decode(_t(inputs[0]) / vae.config.scaling_factor, return_dict=False)[0]
    return {"image": _pixels(ref, decoded).numpy()}


def vae_encode(ref, inputs, params) -> dict:
    """The latents an img2img pipeline starts from: the image processor's preprocess of the PIL
    image, `vae.encode(...).latent_dist.sample(generator)` and the scaling factor, as
    prepare_latents does (the candidate gets that generator's first draw)."""
    import torch
    from PIL import Image

    pipe = ref.img2img
    pixels = pipe.image_processor.preprocess(Image.fromarray(np.asarray(inputs[0][0], np.uint8)))
    generator = torch.Generator().manual_seed(int(params["generator_seed"]))
    with torch.no_grad():
        latents = pipe.vae.encode(pixels).latent_dist.sample(generator) * pipe.vae.config.scaling_factor
    return {"init_latents": latents.numpy()}


def image_to_rgba(ref, inputs, params) -> dict:
    """What a canvas holds for the image: PIL's RGB -> RGBA, each pixel's four bytes read as one
    little-endian word (ImageData's layout)."""
    from PIL import Image

    rgb = np.clip(np.asarray(inputs[0])[0], 0, 255).astype(np.uint8)
    rgba = np.asarray(Image.fromarray(rgb, "RGB").convert("RGBA"))
    return {"rgba": np.ascontiguousarray(rgba).view("<i4")[..., 0]}


def scheduler(ref, inputs, params) -> dict:
    """The sampler alone: diffusers' loop over a stand-in model that reads its scaled input (so a
    wrong scale_model_input changes the result). A sampler whose step takes a generator gets one,
    as the pipeline's prepare_extra_step_kwargs hands it (the stochastic ones draw from it)."""
    import torch

    noise, eps = inputs[:2]
    sched = ref.sampler(params["sampler"])
    sched.set_timesteps(params["steps"])
    generator = torch.Generator().manual_seed(params["generator_seed"])
    extra = {"generator": generator} if "generator" in inspect.signature(sched.step).parameters else {}
    sample = _t(noise) * sched.init_noise_sigma
    for i, t in enumerate(sched.timesteps):
        scaled = sched.scale_model_input(sample, t)
        model_output = _t(eps[i]) + params["input_weight"] * scaled
        sample = sched.step(model_output, t, sample, **extra).prev_sample
    return {"sample": sample.numpy().astype("float32"), "timesteps": sched.timesteps.numpy().astype("float64")}


def _from_picture(ref, pipe, inputs, **extra) -> dict:
    """A pipeline that starts from the case's picture (img2img, inpainting): the PIL image, the
    strength and a generator of the case's seed; latents, and the decoded image as pixels."""
    import torch
    from PIL import Image

    start = inputs["start"]
    with torch.no_grad():
        latents = pipe(
            prompt=inputs["prompt"],
            negative_prompt=inputs["negative"] or None,
            image=Image.fromarray(np.asarray(start["init_image"], np.uint8)),
            strength=start["strength"],
            num_inference_steps=inputs["steps"],
            guidance_scale=inputs["guidance"],
            generator=torch.Generator().manual_seed(int(inputs["seed"])),
            output_type="latent",
            **extra,
        ).images
        decoded = pipe.vae.decode(latents / pipe.vae.config.scaling_factor, return_dict=False)[0]
    return {"latents": latents.numpy(), "image": _pixels(ref, decoded)[0].to(torch.uint8).numpy()}


def img2img(ref, inputs, params) -> dict:
    """The folder's img2img pipeline with the named sampler; its generator draws the posterior
    sample, the added noise and any step noise, in that order."""
    return _from_picture(ref, ref.img2img_with_sampler(params["scheduler"]), inputs)


def inpaint(ref, inputs, params) -> dict:
    """The folder's own inpainting pipeline (`from_pretrained` gives StableDiffusion(XL)InpaintPipeline)
    with the named sampler and the mask as a PIL "L" picture; its generator draws [the image's
    posterior,] the noise, the masked image's posterior and any step noise, in that order."""
    from PIL import Image

    mask = Image.fromarray(np.asarray(inputs["start"]["mask_image"], np.uint8)[..., 0], "L")
    pipe = ref.with_sampler(params["scheduler"])
    return _from_picture(ref, pipe, inputs, mask_image=mask, height=ref.image_size, width=ref.image_size)


def pipeline(ref, inputs, params) -> dict:
    """The folder's pipeline itself, with the named sampler and the page's seeded latents."""
    import torch

    if "mask_image" in inputs.get("start", {}):
        return inpaint(ref, inputs, params)
    if "start" in inputs:
        return img2img(ref, inputs, params)

    if "lora" in inputs:
        pipe = ref.with_lora(inputs["lora"]["path"], inputs["lora"]["scale"], params["scheduler"])
    else:
        pipe = ref.with_sampler(params["scheduler"])
    # the stochastic samplers draw their per-step noise from the pipeline's generator
    generator = torch.Generator().manual_seed(int(inputs["seed"])) if params.get("step_noise") else None
    # the page's empty negative prompt is diffusers' None (SDXL: zeros where its config says); the
    # LCM pipeline takes none at all
    takes_negative = "negative_prompt" in inspect.signature(pipe.__call__).parameters
    negative = {"negative_prompt": inputs["negative"] or None} if takes_negative else {}
    with torch.no_grad():
        latents = pipe(
            generator=generator,
            prompt=inputs["prompt"],
            **negative,
            num_inference_steps=inputs["steps"],
            guidance_scale=inputs["guidance"],
            latents=_t(inputs["noise"]),
            height=ref.image_size,
            width=ref.image_size,
            output_type="latent",
        ).images
        decoded = pipe.vae.decode(latents / pipe.vae.config.scaling_factor, return_dict=False)[0]
    pixels = _pixels(ref, decoded)[0].to(torch.uint8).numpy()
    return {"latents": latents.numpy(), "image": pixels}
