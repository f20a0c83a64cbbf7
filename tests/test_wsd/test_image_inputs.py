"""What the loop makes from a start image, a mask and LCM's guidance, each against what diffusers
does: the mask's binarization (its mask processor on a PIL picture; the page's pixelMask the
same under node) and LCM's guidance embedding (the pipeline's get_guidance_scale_embedding)."""

from __future__ import annotations

import numpy as np
import pytest

from conformance.stages import all_cases, init_image, init_mask


def test_the_mask_is_binarized_as_diffusers_mask_processor_does():
    import torch
    from diffusers.image_processor import VaeImageProcessor
    from PIL import Image

    from wsd import pagejs
    from wsd.generation import pixel_mask

    rgb = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    rgb[0, :3] = [[128, 128, 128], [127, 127, 127], [255, 0, 0]]  # at the threshold, under it, a colour
    processor = VaeImageProcessor(do_normalize=False, do_binarize=True, do_convert_grayscale=True)
    theirs = processor.preprocess(Image.fromarray(rgb), height=16, width=16)[0, 0].numpy()
    assert np.array_equal(pixel_mask(rgb), theirs)
    page = pagejs.call("pipeline.js", "pixelMask", rgb.reshape(-1).tolist(), 3)
    assert np.array_equal(np.asarray(page, "float32").reshape(16, 16), theirs)
    assert torch.is_tensor(processor.preprocess(Image.fromarray(rgb)))  # (the processor's own output type)


@pytest.mark.parametrize(("guidance", "width"), [(8.5, 32), (1.0, 256), (3.0, 33)])
def test_lcm_guidance_embedding_is_the_pipelines(guidance, width):
    import torch
    from diffusers import LatentConsistencyModelPipeline

    from wsd.entries import guidance_embedding

    ours = guidance_embedding(torch, torch.tensor(guidance, dtype=torch.float32), width)
    w = torch.tensor(guidance - 1).repeat(1)
    theirs = LatentConsistencyModelPipeline.get_guidance_scale_embedding(None, w, embedding_dim=width)
    assert ours.shape == theirs.shape == (1, width)
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=0, atol=1e-6)


def test_the_seeded_pictures_have_both_mask_values_at_latent_size():
    image, mask = init_image(64, 3), init_mask(64, 3)
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8 and image.std() > 20
    small = mask[::8, ::8]  # the latent mask, nearest
    assert set(np.unique(mask)) == {0, 255} and 0 < (small == 255).mean() < 1


def test_each_model_kind_gets_its_own_pipeline_cases():
    def pipeline_variants(**kind):
        return {c.variant for c in all_cases("m", "sd15", **kind) if c.stage.name == "pipeline"}

    ordinary, inpainting = pipeline_variants(), pipeline_variants(inpainting=True)
    assert {"dpm-solver++-4", "img2img-pndm-4-s0.75"} <= ordinary and not any(v.startswith("inpaint") for v in ordinary)
    assert inpainting == {"inpaint-dpm-solver++-4", "inpaint-euler-a-4-s0.75"}
    lcm = {(c.stage.name, c.variant) for c in all_cases("m", "sd15", samplers=("lcm",))}
    assert ("pipeline", "lcm-4") in lcm and ("scheduler", "lcm") in lcm
    assert not any(v in {"dpm-solver++-4", "pndm"} for _, v in lcm)
