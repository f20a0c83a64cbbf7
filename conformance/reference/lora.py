"""A seeded LoRA for a folder, made as diffusers' LoRA training scripts make one: PEFT adapters
added to the folder's UNet and text encoder(s) (`add_adapter(LoraConfig(...))`), their state
dicts taken by `get_peft_model_state_dict` and written by the pipeline class's `save_lora_weights`.
Random, not zero, up matrices (`init_lora_weights=False`), and an alpha unlike the rank, so a
LoRA that is ignored, misrouted or scaled wrongly changes the image.
"""

from __future__ import annotations

import json
from pathlib import Path

# what diffusers' train_text_to_image_lora scripts target, plus the ResNets' convs (conv LoRAs: LoCon)
UNET_TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "conv1", "conv2"]
TEXT_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj"]


def make_lora(folder: Path, out: Path, seed: int, rank: int = 4) -> Path:
    """`out`/pytorch_lora_weights.safetensors for the folder's components, from `seed`."""
    import diffusers
    import torch
    import transformers
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    folder, out = Path(folder), Path(out)
    sdxl = (folder / "text_encoder_2").is_dir()
    unet = diffusers.UNet2DConditionModel.from_pretrained(str(folder), subfolder="unet", local_files_only=True)  # nosec B615
    encoders = {"text_encoder": transformers.CLIPTextModel}
    if sdxl:
        encoders["text_encoder_2"] = transformers.CLIPTextModelWithProjection
    modules = {"unet": (unet, UNET_TARGETS, rank // 2)}
    for name, cls in encoders.items():
        encoder = cls.from_pretrained(str(folder), subfolder=name, local_files_only=True)  # nosec B615
        modules[name] = (encoder, TEXT_TARGETS, rank * 2)
    layers, metadata = {}, {}
    for index, (name, (module, targets, alpha)) in enumerate(modules.items()):
        # seeded just before the adapter's init: nothing else (loading included) draws in between
        torch.manual_seed(seed * 100 + index)
        config = LoraConfig(r=rank, lora_alpha=alpha, init_lora_weights=False, target_modules=targets)
        module.add_adapter(config)
        layers[f"{name}_lora_layers"] = get_peft_model_state_dict(module)
        metadata[f"{name}_lora_adapter_metadata"] = config.to_dict()
    pipeline = diffusers.StableDiffusionXLPipeline if sdxl else diffusers.StableDiffusionPipeline
    # the adapter configs hold sets (target_modules): JSON-safe copies, without the folder's path
    # (base_model_name_or_path), so the same seed gives the same file on any machine
    portable = {"base_model_name_or_path": None}
    metadata = {k: {**json.loads(json.dumps(v, default=sorted)), **portable} for k, v in metadata.items()}
    pipeline.save_lora_weights(str(out), **layers, **metadata, safe_serialization=True)
    return out / "pytorch_lora_weights.safetensors"
