"""LoRA at run time: which weights a LoRA may change (written into the manifest at build time) and
the merge `W + scale * alpha/rank * up @ down` on a built model's weights (the native backend's;
web/lib/lora.js is the page's, over the same manifest table).

A LoRA file is safetensors in one of two layouts:
- diffusers/PEFT (`save_lora_weights`): `<component>.<module>.lora_A.weight` (down) and `.lora_B.weight`
  (up); alpha per component in the header's `lora_adapter_metadata` (`<component>.lora_alpha`,
  `use_rslora`), the rank when absent;
- kohya: `lora_unet_<module with _>.lora_down.weight` / `.lora_up.weight` / `.alpha` (`lora_te_`,
  `lora_te1_`, `lora_te2_` for the text encoders).
The manifest lists, per layer, every key prefix it answers to, so matching a key is a lookup on
both sides, never a re-derivation of the naming rules.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from wsd.errors import WsdError

# The folder components a LoRA may change, and the layer types in them (what diffusers' loaders
# target: attention projections, feed-forwards, convs). The VAE is never a LoRA's.
COMPONENTS = ("unet", "text_encoder", "text_encoder_2")
TARGETS = "the weights of torch.nn.Linear and torch.nn.Conv2d layers of unet, text_encoder and text_encoder_2"
DOWN = (".lora_A.weight", ".lora_down.weight")
UP = (".lora_B.weight", ".lora_up.weight")
ALPHA = (".alpha",)


class LoraError(WsdError):
    """A LoRA file that does not fit the model (named key, named reason)."""


# --- build time: the manifest's table -----------------------------------------------------


# kohya's prefixes per component: sd-scripts writes `lora_te_` for SD 1.5's one text encoder and
# `lora_te1_`/`lora_te2_` for SDXL's two; diffusers reads (and its converter writes) either for the first
KOHYA = {"unet": ("lora_unet_",), "text_encoder": ("lora_te_", "lora_te1_"), "text_encoder_2": ("lora_te2_",)}


def aliases(component: str, path: str) -> list[str]:
    """Every key prefix naming the layer `path` of `component`: diffusers', and kohya's (whose text
    encoder names keep transformers 4's `text_model.`; transformers 5 flattened CLIPTextModel)."""
    paths = [path]
    if component.startswith("text_encoder") and not path.startswith("text_model."):
        paths.append(f"text_model.{path}")
    out = [f"{component}.{p}" for p in paths]
    out += [prefix + p.replace(".", "_") for prefix in KOHYA[component] for p in paths]
    return out


def layer_table(model, named: dict[str, list[str | None]]) -> dict:
    """The manifest's `lora` section. `named`: entry point -> its params' torch names qualified by
    component (`unet.conv_in.weight`; None for a buffer or constant), in tensor-cache order. Every
    Linear and Conv2d of the components is a layer; one whose weights no entry reads (SDXL's last
    text-encoder layer: its pipelines take the penultimate states) has no params, and a LoRA's
    matrices for it change nothing, as in diffusers."""
    import torch

    modules = {model.spec.unet.subfolder: model.unet}
    modules.update({c.subfolder: enc for c, enc in zip(model.spec.text_encoders, model.text_encoders, strict=True)})
    layers: dict[str, dict] = {}
    for component, module in modules.items():
        if component not in COMPONENTS:
            continue
        for path, sub in module.named_modules():
            if isinstance(sub, (torch.nn.Linear, torch.nn.Conv2d)):
                layers[f"{component}.{path}"] = {"keys": aliases(component, path), "params": []}
    for entry, names in named.items():
        for index, name in enumerate(names):
            row = layers.get((name or "").removesuffix(".weight")) if (name or "").endswith(".weight") else None
            if row is not None:
                row["params"].append(f"{entry}_{index}")
    return {"targets": TARGETS, "layers": [{"name": k, **v} for k, v in sorted(layers.items())]}


# --- run time: reading a file, matching it, merging --------------------------------------


def read(path: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """A LoRA file's tensors (as float32) and its header metadata."""
    from safetensors import safe_open

    path = Path(path)
    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k).float().numpy() for k in f.keys()}  # noqa: SIM118 (safe_open has no iter)
    except FileNotFoundError:
        raise LoraError(f"{path}: no such LoRA file") from None
    except Exception as exc:  # safetensors raises its own SafetensorError on a damaged file
        raise LoraError(f"{path}: not a safetensors LoRA file ({exc})") from None
    return tensors, meta


def peft_alphas(meta: dict[str, str], source: str) -> dict[str, dict]:
    """diffusers' per-component PEFT settings from `lora_adapter_metadata` (empty: alpha = rank)."""
    raw = meta.get("lora_adapter_metadata")
    if not raw:
        return {}
    try:
        flat = json.loads(raw)
    except ValueError:
        raise LoraError(f"{source}: lora_adapter_metadata is not JSON") from None
    out: dict[str, dict] = {}
    for key, value in flat.items():
        component, _, field = key.partition(".")
        out.setdefault(component, {})[field] = value
    for component, settings in out.items():
        for field in ("alpha_pattern", "rank_pattern"):
            if settings.get(field):
                raise LoraError(f"{source}: {component}.{field} is set; per-layer alphas and ranks are not supported")
    return out


def plan(table: dict, tensors: dict[str, np.ndarray], meta: dict[str, str], source: str) -> list[dict]:
    """Per layer the LoRA changes: {name, params, down, up, factor} with factor = alpha/rank
    (alpha/sqrt(rank) for rsLoRA). Every key of the file must name a layer of the table."""
    index = {key: layer for layer in table["layers"] for key in layer["keys"]}
    parts: dict[str, dict] = {}
    for key, value in tensors.items():
        suffix = next((s for s in (*DOWN, *UP, *ALPHA) if key.endswith(s)), None)
        layer = index.get(key.removesuffix(suffix)) if suffix else None
        if layer is None:
            raise LoraError(
                f"{source}: key {key!r} names no layer this model lets a LoRA change ({table['targets']}; "
                f"keys end in {', '.join(DOWN + UP + ALPHA)})"
            )
        role = "down" if suffix in DOWN else "up" if suffix in UP else "alpha"
        parts.setdefault(layer["name"], {"layer": layer})[role] = value
    settings = peft_alphas(meta, source)
    out = []
    for name, got in sorted(parts.items()):
        if "down" not in got or "up" not in got:
            raise LoraError(f"{source}: layer {name} has {'no up' if 'down' in got else 'no down'} matrix")
        down, up = got["down"], got["up"]
        rank = down.shape[0]
        if up.ndim < 2 or up.shape[1] != rank:
            raise LoraError(f"{source}: layer {name}: up {list(up.shape)} does not follow down {list(down.shape)}")
        own = settings.get(name.partition(".")[0], {})
        alpha = float(got["alpha"]) if "alpha" in got else float(own.get("lora_alpha") or rank)
        factor = alpha / (math.sqrt(rank) if own.get("use_rslora") else rank)
        out.append({"name": name, "params": got["layer"]["params"], "down": down, "up": up, "factor": factor})
    return out


def delta(change: dict, shape: tuple[int, ...], source: str) -> np.ndarray:
    """up @ down in the weight's shape (a conv's down is (rank, in, kh, kw), its up (out, rank, 1, 1))."""
    down, up = change["down"], change["up"]
    rank = down.shape[0]
    if up.shape[0] != shape[0] or down[0].size != math.prod(shape[1:]):
        raise LoraError(
            f"{source}: layer {change['name']}: down {list(down.shape)} and up {list(up.shape)} do not fit "
            f"its weight {list(shape)} (a LoRA made for another model?)"
        )
    return (up.reshape(up.shape[0], rank) @ down.reshape(rank, -1)).reshape(shape)


def check(table: dict | None, path: Path, shapes: dict[str, tuple[int, ...]]) -> int:
    """How many layers the LoRA at `path` changes, or a LoraError naming what does not fit."""
    if table is None:
        raise LoraError(f"{path}: the model was built before LoRA support (no `lora` in its manifest): rebuild it")
    changes = plan(table, *read(path), str(path))
    for change in changes:
        for param in change["params"]:
            delta(change, shapes[param], str(path))
    return len(changes)


def merged(table: dict, base: dict[str, np.ndarray], path: Path, scale: float) -> dict[str, np.ndarray]:
    """The weights the LoRA at `path` changes, merged at `scale`, by tensor-cache name (float32);
    `base`: the build's weights by the same names."""
    tensors, meta = read(path)
    out = {}
    for change in plan(table, tensors, meta, str(path)):
        for param in change["params"]:
            weight = np.asarray(base[param], "float32")
            out[param] = weight + np.float32(scale * change["factor"]) * delta(change, weight.shape, str(path))
    return out
