"""LoRA at run time on a native build: the manifest's table, the merge against diffusers'
`load_lora_weights` + `fuse_lora`, kohya's layout, switching, and files that do not fit."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
from safetensors.numpy import save_file

from conformance.reference.lora import make_lora
from wsd import lora
from wsd.build import BuildOptions, build
from wsd.params import load_shards

QUIET = {"echo": lambda *_: None, "progress": False}
SCALE = 0.7


@pytest.fixture(scope="module")
def native(tmp_path_factory):
    return build(BuildOptions("sd15-tiny", random_init=True, target="llvm"), tmp_path_factory.mktemp("dist"), **QUIET)


@pytest.fixture(scope="module")
def peft_file(tiny_folder, tmp_path_factory):
    return make_lora(tiny_folder, tmp_path_factory.mktemp("lora"), seed=0)


@pytest.fixture(scope="module")
def fused(tiny_folder, peft_file):
    """The folder's pipeline with the LoRA fused by diffusers, as its docs show."""
    import diffusers

    pipe = diffusers.StableDiffusionPipeline.from_pretrained(str(tiny_folder), safety_checker=None)
    pipe.load_lora_weights(str(peft_file.parent), weight_name=peft_file.name)
    pipe.fuse_lora(lora_scale=SCALE)
    return pipe


def merged_by_layer(native, path) -> dict[str, np.ndarray]:
    table = native.manifest["lora"]
    merged = lora.merged(table, load_shards(native.out), path, SCALE)
    return {row["name"]: merged[row["params"][0]] for row in table["layers"] if row["params"][0] in merged}


def test_the_table_names_linear_and_conv_weights_of_unet_and_text_encoder(native):
    table = native.manifest["lora"]
    names = [row["name"] for row in table["layers"]]
    assert any(n.endswith("attn1.to_q") for n in names) and any(n.endswith("resnets.0.conv1") for n in names)
    assert any(n.startswith("text_encoder.") and n.endswith("self_attn.q_proj") for n in names)
    # not the VAE's, not a norm's scale, not an embedding table (time_embedding.linear_1 is a Linear)
    assert not any(
        n.startswith("vae.") or ".norm" in n or n.endswith(("token_embedding", "position_embedding")) for n in names
    )
    row = next(
        r for r in table["layers"] if r["name"].endswith("down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q")
    )
    assert (
        row["keys"][0] == row["name"]
        and "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q" in row["keys"]
    )
    assert all(p.startswith("unet_") for p in row["params"])


def test_the_merge_is_diffusers_fuse_lora(native, peft_file, fused):
    by_layer = merged_by_layer(native, peft_file)
    assert len(by_layer) > 20  # attention, convs and the text encoder's projections
    for name, weight in by_layer.items():
        component, _, path = name.partition(".")
        want = getattr(fused, component).get_submodule(path).weight.detach().numpy()
        np.testing.assert_allclose(weight, want, rtol=0, atol=2e-6, err_msg=name)


def test_kohya_keys_merge_as_the_same_layers(native, peft_file, tmp_path):
    """The same matrices under kohya's names (what diffusers' convert_state_dict_to_kohya writes,
    with each layer's alpha) merge to the same weights."""
    from diffusers.utils import convert_state_dict_to_kohya
    from safetensors.torch import load_file

    peft = load_file(str(peft_file))
    meta = json.loads(lora.read(peft_file)[1]["lora_adapter_metadata"])
    kohya = convert_state_dict_to_kohya(peft)
    for key in kohya:
        if key.endswith(".alpha"):
            component = "unet" if key.startswith("lora_unet_") else "text_encoder"
            kohya[key] = kohya[key] * 0 + float(meta[f"{component}.lora_alpha"])
    path = tmp_path / "kohya.safetensors"
    save_file({k: v.contiguous().numpy() for k, v in kohya.items()}, str(path))
    ours, theirs = merged_by_layer(native, path), merged_by_layer(native, peft_file)
    assert ours.keys() == theirs.keys()
    for name in ours:
        np.testing.assert_allclose(ours[name], theirs[name], rtol=0, atol=1e-6, err_msg=name)


def test_the_native_model_switches_loras_and_returns_to_its_own_weights(native, peft_file):
    from wsd.native import NativeModel

    model = NativeModel(native.out)
    rng = np.random.default_rng(0)
    inputs = [
        rng.standard_normal(t["shape"]).astype(t["dtype"]) for t in native.manifest["entry_points"]["unet"]["inputs"]
    ]
    own = model.run("unet", *inputs)[0]
    assert model.set_lora(peft_file, SCALE) > 0
    with_lora = model.run("unet", *inputs)[0]
    model.set_lora(peft_file, 0.0)
    np.testing.assert_allclose(model.run("unet", *inputs)[0], own, atol=1e-5)
    model.set_lora(None)
    np.testing.assert_array_equal(model.run("unet", *inputs)[0], own)
    assert float(np.abs(with_lora - own).max()) > 1e-2


def _write(path, tensors: dict, metadata: dict | None = None):
    save_file({k: np.asarray(v, "float32") for k, v in tensors.items()}, str(path), metadata=metadata)
    return path


DOWN = {"unet.conv_in.lora_A.weight": np.zeros((4, 4, 3, 3))}  # rank 4 over conv_in (4 channels in, 3x3)


@pytest.mark.parametrize(
    ("tensors", "metadata", "says"),
    [
        ({"unet.mid_block.nope.lora_A.weight": np.zeros((4, 8))}, None, "names no layer this model lets a LoRA change"),
        ({"vae.decoder.conv_in.lora_A.weight": np.zeros((4, 8))}, None, "names no layer"),
        (DOWN, None, "has no up matrix"),
        (
            {
                "unet.conv_in.lora_A.weight": np.zeros((4, 4, 3, 3)),
                "unet.conv_in.lora_B.weight": np.zeros((7, 4, 1, 1)),
            },
            None,
            "do not fit its weight",
        ),
        (
            {
                "unet.conv_in.lora_A.weight": np.zeros((4, 4, 3, 3)),
                "unet.conv_in.lora_B.weight": np.zeros((8, 2, 1, 1)),
            },
            None,
            "does not follow down",
        ),
        (
            {
                "unet.conv_in.lora_A.weight": np.zeros((4, 4, 3, 3)),
                "unet.conv_in.lora_B.weight": np.zeros((8, 4, 1, 1)),
            },
            {"lora_adapter_metadata": json.dumps({"unet.alpha_pattern": {"conv_in": 3}})},
            "per-layer alphas and ranks are not supported",
        ),
    ],
)
def test_a_lora_that_does_not_fit_is_named_and_changes_nothing(native, tmp_path, tensors, metadata, says):
    from wsd.native import NativeModel

    shapes = {n: a.shape for n, a in load_shards(native.out).items()}
    path = _write(tmp_path / "bad.safetensors", tensors, metadata)
    with pytest.raises(lora.LoraError, match=says):
        lora.check(native.manifest["lora"], path, shapes)
    model = NativeModel(native.out)
    before = [p.numpy().copy() for p in model.params["unet"]]
    with pytest.raises(lora.LoraError):
        model.set_lora(path, 1.0)
    assert all(np.array_equal(a, b.numpy()) for a, b in zip(before, model.params["unet"], strict=True))


@pytest.mark.parametrize("damage", ["truncated", "not-safetensors", "missing"])
def test_a_damaged_file_is_named(native, peft_file, tmp_path, damage):
    path = tmp_path / "damaged.safetensors"
    data = peft_file.read_bytes()
    if damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "not-safetensors":
        path.write_bytes(struct.pack("<Q", 10**9) + b"{}")
    with pytest.raises(lora.LoraError, match="no such LoRA file" if damage == "missing" else "not a safetensors"):
        lora.check(native.manifest["lora"], path, {})
