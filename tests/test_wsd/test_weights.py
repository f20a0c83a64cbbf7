"""Capture without the weights in memory (wsd/weights.py): the same program, the same values."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from wsd import models
from wsd.build import random_folder
from wsd.capture import export_with_sources, import_exported
from wsd.entries import entries_for
from wsd.models.folder import load
from wsd.weights import LazyWeight


@pytest.fixture(scope="module")
def sdxl_folder():
    return random_folder(models.get("sdxl-tiny"), 0, echo=lambda *_: None)


@pytest.mark.parametrize("entry_name", ["clip", "unet"])
def test_shell_capture_is_the_loaded_capture(sdxl_folder, entry_name):
    spec = models.get("sdxl-tiny")
    entry = next(e for e in entries_for(spec) if e.name == entry_name)
    runs = {}
    for weights in (True, False):
        exported, sources = export_with_sources(entry, load(spec, sdxl_folder, weights=weights))
        runs[weights] = import_exported(entry_name, exported, sources=sources)
    (real_func, real_params), (lazy_func, lazy_params) = runs[True], runs[False]
    assert lazy_func.script() == real_func.script()
    assert [n for n, _ in lazy_params] == [n for n, _ in real_params]
    assert all(isinstance(a, LazyWeight) for _, a in lazy_params)
    for (name, real), (_, lazy) in zip(real_params, lazy_params, strict=True):
        assert np.array_equal(lazy.load(), real), name


def test_sd_style_text_encoder_keys_load(tmp_path, tiny_folder, tiny_spec):
    """SD 1.5's text_encoder files (saved by transformers 4) name keys `text_model.*`; the
    folder check, the reference loader and the build's streaming all accept them."""
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "sd-style"
    shutil.copytree(tiny_folder, folder)
    path = folder / "text_encoder" / "model.safetensors"
    state = load_file(str(path))
    path.unlink()
    save_file({f"text_model.{k}": v for k, v in state.items()}, str(path))
    loaded = load(tiny_spec, folder)
    shell = load(tiny_spec, folder, weights=False)
    entry = next(e for e in entries_for(tiny_spec) if e.name == "clip")
    exported, sources = export_with_sources(entry, shell)
    _, params = import_exported("clip", exported, sources=sources)
    real = dict(loaded.text_encoders[0].state_dict())
    for _, lazy in params:
        assert lazy.key.startswith("text_model.")
        assert np.array_equal(lazy.load(), real[lazy.key.removeprefix("text_model.")].numpy())


def test_a_sharded_component_loads_and_streams(tmp_path, tiny_folder, tiny_spec):
    """save_pretrained shards a component over its shard size (SDXL's UNet): an index and shards."""
    from diffusers import UNet2DConditionModel

    folder = tmp_path / "sharded"
    shutil.copytree(tiny_folder, folder)
    unet = UNet2DConditionModel.from_pretrained(str(folder / "unet"), local_files_only=True)  # nosec B615
    shutil.rmtree(folder / "unet")
    unet.save_pretrained(str(folder / "unet"), max_shard_size="2MB")
    assert (folder / "unet" / "diffusion_pytorch_model.safetensors.index.json").is_file()
    assert len(list((folder / "unet").glob("*.safetensors"))) > 1
    shell = load(tiny_spec, folder, weights=False)
    entry = next(e for e in entries_for(tiny_spec) if e.name == "unet")
    exported, sources = export_with_sources(entry, shell)
    _, params = import_exported("unet", exported, sources=sources)
    real = unet.state_dict()
    assert len({lazy.path for _, lazy in params}) > 1
    for _, lazy in params:
        assert np.array_equal(lazy.load(), real[lazy.key].numpy())
