"""Model specs, the project tokenizer, and loading diffusers folders (good and bad)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from wsd import models
from wsd.errors import ModelFolderError, WsdError
from wsd.models import folder as folders
from wsd.models.tokenizer import learn_merges, write_tokenizer

PROMPTS = [
    "a photograph of an astronaut riding a horse",
    "",
    "Ünïcödé ☃ and emoji 🦊!!",
    "punctuation: (a), [b]; {c}... 'quoted' \"double\" -- end?",
    "   spaces   and\ttabs\nnewlines  ",
    "numbers 1234567890 and 3.14",
    " ".join(["word"] * 120),  # over 77 tokens: truncated
]


def test_unknown_model_names_the_known_ones():
    with pytest.raises(WsdError, match=r"unknown model 'sd14'.*sd15, sd15-tiny"):
        models.get("sd14")


def test_sd15_is_the_real_architecture():
    spec = models.get("sd15")
    assert spec.unet.config["block_out_channels"] == [320, 640, 1280, 1280]
    assert spec.unet.config["cross_attention_dim"] == 768 == spec.text_hidden
    assert spec.vae.config["block_out_channels"] == [128, 256, 512, 512]
    assert (spec.image_size, spec.latent_size, spec.vae_scale) == (512, 64, 8)
    assert spec.text_encoders[0].config["num_hidden_layers"] == 12


def test_tiny_shares_block_types_with_sd15():
    big, tiny = models.get("sd15"), models.get("sd15-tiny")
    for key in ("down_block_types", "up_block_types"):
        assert big.unet.config[key] == tiny.unet.config[key]
    assert big.vae.config["up_block_types"] == tiny.vae.config["up_block_types"]
    assert tiny.latent_size == 8 and tiny.image_size == 64
    assert big.config_hash() != tiny.config_hash()


def test_learned_merges_are_deterministic_and_greedy():
    text = "low lower lowest low low"
    merges = learn_merges(text, 5)
    assert merges == learn_merges(text, 5)
    assert merges[0] == ("l", "o")  # the most frequent pair first


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from transformers import CLIPTokenizer

    path = tmp_path_factory.mktemp("tok")
    write_tokenizer(path, 400)
    return CLIPTokenizer.from_pretrained(str(path), local_files_only=True), path


@pytest.mark.parametrize("prompt", PROMPTS)
def test_project_tokenizer_reads_as_clip(tokenizer, prompt):
    tok, path = tokenizer
    ids = tok(prompt, padding="max_length", max_length=77, truncation=True).input_ids
    vocab = json.loads((path / "vocab.json").read_text())
    assert len(ids) == 77
    assert ids[0] == vocab["<|startoftext|>"]
    assert vocab["<|endoftext|>"] in ids  # end token always present, even after truncation
    assert max(ids) < len(vocab)


def test_tokenizer_merges_shorten_common_words(tokenizer):
    tok, _ = tokenizer
    assert len(tok("photograph").input_ids) < len("photograph") + 2


def test_random_folder_loads_back(tiny_model, tiny_spec):
    assert tiny_model.unet.config.cross_attention_dim == tiny_spec.text_hidden
    assert tiny_model.scheduler_config["_class_name"] == "PNDMScheduler"
    assert len(tiny_model.tokenizers) == 1


def test_random_weights_are_seeded(tiny_spec, tmp_path):
    folders.write_random(tiny_spec, tmp_path / "a", seed=3)
    from safetensors.numpy import load_file

    again = load_file(str(tmp_path / "a" / "vae" / "diffusion_pytorch_model.safetensors"))
    folders.write_random(tiny_spec, tmp_path / "b", seed=3)
    same = load_file(str(tmp_path / "b" / "vae" / "diffusion_pytorch_model.safetensors"))
    assert all(np.array_equal(again[k], same[k]) for k in again)
    # and the seed is used: another seed gives other weights (a writer ignoring it fails here)
    folders.write_random(tiny_spec, tmp_path / "c", seed=4)
    other = load_file(str(tmp_path / "c" / "vae" / "diffusion_pytorch_model.safetensors"))
    assert again.keys() == other.keys()
    assert not any(np.array_equal(again[k], other[k]) for k in again if again[k].size > 1 and again[k].std() > 0)


@pytest.fixture
def broken(tiny_folder, tmp_path):
    dest = tmp_path / "model"
    shutil.copytree(tiny_folder, dest)
    return dest


def _load(folder):
    return folders.load(models.get("sd15-tiny"), folder)


def test_missing_folder(tmp_path):
    with pytest.raises(ModelFolderError, match="does not exist"):
        _load(tmp_path / "nope")


def test_missing_subfolder_is_named(broken):
    shutil.rmtree(broken / "vae")
    with pytest.raises(ModelFolderError, match=r"vae: subfolder is missing"):
        _load(broken)


def test_malformed_config_names_the_file(broken):
    (broken / "unet" / "config.json").write_text("{ not json")
    with pytest.raises(ModelFolderError, match=r"unet/config.json: not valid JSON"):
        _load(broken)


def test_wrong_config_key_suggests_the_right_one(broken):
    path = broken / "unet" / "config.json"
    config = json.loads(path.read_text())
    config["cross_attn_dim"] = config.pop("cross_attention_dim")
    path.write_text(json.dumps(config))
    with pytest.raises(ModelFolderError, match=r"'cross_attention_dim' is missing \(found 'cross_attn_dim'"):
        _load(broken)


def test_wrong_class_is_named(broken):
    path = broken / "vae" / "config.json"
    config = json.loads(path.read_text())
    config["_class_name"] = "VQModel"
    path.write_text(json.dumps(config))
    with pytest.raises(ModelFolderError, match=r"_class_name is 'VQModel', expected 'AutoencoderKL'"):
        _load(broken)


def test_weight_shape_mismatch_names_the_tensor(broken):
    from safetensors.numpy import load_file, save_file

    path = broken / "vae" / "diffusion_pytorch_model.safetensors"
    tensors = load_file(str(path))
    key = "decoder.conv_out.weight"
    tensors[key] = np.zeros((3, 8, 3, 3), dtype=tensors[key].dtype)
    save_file(tensors, str(path))
    with pytest.raises(ModelFolderError, match=r"tensor 'decoder.conv_out.weight' has shape \[3, 8, 3, 3\]"):
        _load(broken)


def test_missing_tensor_is_named(broken):
    from safetensors.numpy import load_file, save_file

    path = broken / "text_encoder" / "model.safetensors"
    tensors = load_file(str(path))
    del tensors["final_layer_norm.weight"]
    save_file(tensors, str(path))
    with pytest.raises(ModelFolderError, match=r"1 tensors missing, first .*final_layer_norm.weight"):
        _load(broken)


def test_truncated_weights_file(broken):
    path = broken / "unet" / "diffusion_pytorch_model.safetensors"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ModelFolderError, match="unreadable safetensors"):
        _load(broken)


def test_missing_tokenizer_file(broken):
    (broken / "tokenizer" / "merges.txt").unlink()
    with pytest.raises(ModelFolderError, match=r"tokenizer/merges.txt: tokenizer file is missing"):
        _load(broken)


def test_text_width_must_match_cross_attention(broken):
    path = broken / "unet" / "config.json"
    config = json.loads(path.read_text())
    config["cross_attention_dim"] = 48
    path.write_text(json.dumps(config))
    with pytest.raises(ModelFolderError):
        _load(broken)
