"""Diffusers model folders: write one with seeded random weights, and load one, checked.

`load` is the single path for a user's SD 1.5 folder and for the folders `write_random`
makes, so tests of the tiny models exercise the code a real folder goes through. Every
problem names the file that is wrong and what was expected; nothing is fetched.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from pathlib import Path

from wsd.errors import ModelFolderError
from wsd.models.spec import Component, ModelSpec
from wsd.models.tokenizer import write_tokenizer

SCHEDULER_FILE = Path("scheduler") / "scheduler_config.json"
TOKENIZER_FILES = ("vocab.json", "merges.txt")


@dataclass
class LoadedModel:
    spec: ModelSpec
    folder: Path
    unet: object
    vae: object
    text_encoders: list
    tokenizers: list
    scheduler_config: dict


def write_random(spec: ModelSpec, folder: Path, seed: int) -> Path:
    """Build every component from its config with seeded weights and save a diffusers folder."""
    import torch

    folder = Path(folder)
    for index, comp in enumerate(spec.components):
        torch.manual_seed(seed * 1000 + index)  # each component its own stream: order-independent
        model = _instantiate(comp)
        _vary_constants(model)
        model.save_pretrained(folder / comp.subfolder, safe_serialization=True)
    for index, sub in enumerate(spec.tokenizers):
        pads = {"pad": spec.tokenizer_pads[index]} if index < len(spec.tokenizer_pads) else {}
        write_tokenizer(folder / sub, spec.tokenizer_merges, spec.max_tokens, **pads)
    (folder / "scheduler").mkdir(parents=True, exist_ok=True)
    (folder / SCHEDULER_FILE).write_text(json.dumps(spec.scheduler_config, indent=2))
    (folder / "model_index.json").write_text(json.dumps(model_index(spec), indent=2))
    return folder


def model_index(spec: ModelSpec) -> dict:
    """A complete model_index.json, so diffusers' own `from_pretrained(folder)` loads it too."""
    import diffusers

    index = {
        "_class_name": spec.pipeline_class,
        "_diffusers_version": diffusers.__version__,
        "wsd_model": spec.name,
        "scheduler": ["diffusers", spec.scheduler_config["_class_name"]],
        "feature_extractor": [None, None],
    }
    if spec.family == "sdxl":
        index.update(image_encoder=[None, None], force_zeros_for_empty_prompt=True)
    else:
        index.update(safety_checker=[None, None], requires_safety_checker=False)
    for comp in spec.components:
        index[comp.subfolder] = [comp.library, comp.class_name]
    for sub in spec.tokenizers:
        index[sub] = ["transformers", "CLIPTokenizer"]
    return index


def _vary_constants(model) -> None:
    """Biases and norm scales start constant (0 or 1) in a fresh model; real weights never are,
    and a constant bias hides bugs (a kernel that drops a zero bias is still right). So every
    constant tensor gets seeded noise around its value."""
    import torch

    with torch.no_grad():
        for param in model.parameters():
            if param.numel() == 1 or bool(torch.all(param == param.flatten()[0])):
                param.add_(0.05 * torch.randn_like(param))


def _instantiate(comp: Component):
    cls = comp.load_class()
    if comp.library == "transformers":
        config_cls = cls.config_class
        return cls(config_cls(**comp.config)).eval()
    return cls.from_config(comp.config).eval()


def read_json(path: Path) -> dict:
    if not path.is_file():
        raise ModelFolderError(f"{path}: file is missing")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ModelFolderError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ModelFolderError(f"{path}: expected a JSON object, found {type(data).__name__}")
    return data


def check_config(comp: Component, config: dict, path: Path) -> None:
    """The keys the architecture depends on are present and agree with the spec's kind of model."""
    expected_class = comp.class_name if comp.library == "diffusers" else None
    found_class = config.get("_class_name")
    if expected_class and found_class and found_class != expected_class:
        raise ModelFolderError(f"{path}: _class_name is {found_class!r}, expected {expected_class!r}")
    for key in comp.required_keys:
        if key not in config:
            known = known_keys(comp)
            unknown = [k for k in config if k not in known and not k.startswith("_")]
            near = difflib.get_close_matches(key, unknown, n=1)
            hint = f" (found {near[0]!r}: a misspelling?)" if near else ""
            raise ModelFolderError(f"{path}: required config key {key!r} is missing{hint}")


def known_keys(comp: Component) -> set[str]:
    """The config keys the component's class accepts."""
    import inspect

    cls = comp.load_class()
    if comp.library == "transformers":
        return set(cls.config_class().to_dict())
    return set(inspect.signature(cls.__init__).parameters)


def _weights_file(comp: Component, sub: Path) -> Path:
    """The component's weights: one file, or the index of a sharded one (`<name>.index.json`,
    as save_pretrained writes a component over its shard size: SDXL's 10 GB UNet)."""
    for name in comp.weights:
        for candidate in (sub / name, sub / f"{name}.index.json"):
            if candidate.is_file():
                return candidate
    raise ModelFolderError(f"{sub}: no weights file; expected one of {', '.join(comp.weights)} (or its .index.json)")


def weight_map(weights: Path) -> dict[str, Path]:
    """tensor name -> the file holding it (a sharded index's `weight_map`, or the one file)."""
    if weights.name.endswith(".index.json"):
        index = read_json(weights).get("weight_map")
        if not isinstance(index, dict) or not index:
            raise ModelFolderError(f"{weights}: key 'weight_map' must map tensor names to shard files")
        shards = {name: weights.parent / name for name in set(index.values())}
        missing = sorted(n for n, path in shards.items() if not path.is_file())
        if missing:
            raise ModelFolderError(f"{weights}: shard file {missing[0]} is missing")
        return {key: shards[name] for key, name in index.items()}
    from wsd.weights import file_keys

    kind = "safetensors" if weights.suffix == ".safetensors" else "weights"
    try:
        return dict.fromkeys(file_keys(weights), weights)
    except Exception as exc:  # safetensors and torch.load raise their own error types
        raise ModelFolderError(f"{weights}: unreadable {kind} file ({exc})") from None


def _shapes(files: dict[str, Path]) -> dict[str, tuple[int, ...]]:
    from wsd.weights import shapes

    try:
        return shapes(files)
    except Exception as exc:  # safetensors and torch.load raise their own error types
        raise ModelFolderError(f"{next(iter(files.values()))}: unreadable weights file ({exc})") from None


def check_weights(model, weights: Path) -> dict[str, tuple[Path, str]]:
    """Every tensor the model needs is in the file(s) with the model's shape; nothing is left
    over. Returns the model's state_dict key -> (the file holding it, its name there)."""
    from wsd.weights import key_in_file

    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    files = weight_map(weights)
    found = _shapes(files)
    present = set(found)
    names = {key: key_in_file(key, present) for key in expected}  # the file's name for each key
    missing = sorted(k for k, where in names.items() if where is None)
    if missing:
        raise ModelFolderError(f"{weights}: {len(missing)} tensors missing, first {missing[0]!r}")
    for key, shape in expected.items():
        if found[names[key]] != shape:
            raise ModelFolderError(
                f"{weights}: tensor {key!r} has shape {list(found[names[key]])}, the config needs {list(shape)}"
            )
    extra = sorted(set(found) - set(names.values()))
    if extra:
        raise ModelFolderError(f"{weights}: {len(extra)} tensors the config does not use, first {extra[0]!r}")
    return {key: (files[where], where) for key, where in names.items()}


def _load_component(comp: Component, folder: Path, weights_wanted: bool = True):
    """The component with its weights, or (weights=False) a checked shell whose parameters are
    on the meta device and know their file (wsd/weights.py: the build streams them)."""
    from wsd.weights import WEIGHTS_FILE_ATTR, shell_mode

    sub = folder / comp.subfolder
    if not sub.is_dir():
        raise ModelFolderError(f"{sub}: subfolder is missing (a diffusers folder has {comp.subfolder}/)")
    config_path = sub / "config.json"
    config = read_json(config_path)
    check_config(comp, config, config_path)
    weights = _weights_file(comp, sub)
    cls = comp.load_class()
    with shell_mode():  # parameters on meta (shapes only, no memory); buffers real
        if comp.library == "transformers":
            shell = cls(cls.config_class(**{k: v for k, v in config.items() if not k.startswith("_")}))
        else:
            shell = cls.from_config(config)
    files = check_weights(shell, weights)
    if not weights_wanted:
        setattr(shell, WEIGHTS_FILE_ATTR, files)
        return shell.eval()
    try:
        return cls.from_pretrained(str(sub), local_files_only=True).eval()  # nosec B615 (local folder)
    except Exception as exc:
        raise ModelFolderError(f"{sub}: loading failed: {exc}") from exc


def _load_tokenizer(folder: Path, sub: str, max_tokens: int):
    from transformers import CLIPTokenizer

    path = folder / sub
    for name in TOKENIZER_FILES:
        if not (path / name).is_file():
            raise ModelFolderError(f"{path / name}: tokenizer file is missing")
    vocab = read_json(path / "vocab.json")
    for special in ("<|startoftext|>", "<|endoftext|>"):  # CLIP's BOS and EOS/unknown token
        if special not in vocab:
            raise ModelFolderError(f"{path / 'vocab.json'}: the special token {special} is missing")
    bad = next((k for k, v in vocab.items() if not isinstance(v, int) or isinstance(v, bool) or v < 0), None)
    if bad is not None:
        raise ModelFolderError(f"{path / 'vocab.json'}: the id of {bad!r} is {vocab[bad]!r}, not a token id")
    try:
        # A local folder, never the hub: local_files_only (hence no revision to pin).
        tokenizer = CLIPTokenizer.from_pretrained(str(path), local_files_only=True)  # nosec B615
    except Exception as exc:  # transformers raises many kinds on malformed files
        first = (str(exc).strip().splitlines() or [""])[0]
        raise ModelFolderError(f"{path}: the tokenizer files do not load ({type(exc).__name__}: {first})") from None
    tokenizer.model_max_length = max_tokens
    return tokenizer


def load(spec: ModelSpec, folder: Path, weights: bool = True) -> LoadedModel:
    """A checked diffusers folder; `weights=False` gives shells whose values stay in their files
    (what a build traces: wsd/weights.py), True the modules a reference runs."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelFolderError(f"{folder}: model folder does not exist")
    unet = _load_component(spec.unet, folder, weights)
    vae = _load_component(spec.vae, folder, weights)
    encoders = [_load_component(c, folder, weights) for c in spec.text_encoders]
    hidden = sum(e.config.hidden_size for e in encoders)
    if unet.config.cross_attention_dim != hidden:
        raise ModelFolderError(
            f"{folder / 'unet' / 'config.json'}: cross_attention_dim is {unet.config.cross_attention_dim}, "
            f"but the text encoder(s) give {hidden}"
        )
    tokenizers = [_load_tokenizer(folder, sub, spec.max_tokens) for sub in spec.tokenizers]
    scheduler_config = read_json(folder / SCHEDULER_FILE)
    return LoadedModel(spec, folder, unet, vae, encoders, tokenizers, scheduler_config)
