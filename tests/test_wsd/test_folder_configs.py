"""Configs the build cannot do are refused before tracing, in one line naming file, key and value."""

from __future__ import annotations

import json
import shutil

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wsd import models
from wsd.build import BuildOptions, check_options
from wsd.cli import main
from wsd.errors import WsdError
from wsd.models.from_folder import spec_from_folder


@pytest.fixture
def folder(tmp_path, tiny_folder):
    dest = tmp_path / "my-model"
    shutil.copytree(tiny_folder, dest, ignore=shutil.ignore_patterns("*.safetensors", "manifest.json"))
    return dest


def edit(path, **changes):
    data = json.loads(path.read_text())
    for key, value in changes.items():
        if value is ...:
            data.pop(key, None)
        else:
            data[key] = value
    path.write_text(json.dumps(data))


REFUSED = [
    # An SD 1.5 folder that says it is SDXL: the missing second encoder is the file named.
    ("text_encoder_2", None, [], "text_encoder_2: subfolder is missing"),
    ("model_index.json", {"_class_name": "KandinskyPipeline"}, [], "supported: StableDiffusionPipeline"),
    (
        "scheduler/scheduler_config.json",
        {"prediction_type": "sample"},
        [],
        "prediction_type is 'sample'; supported: epsilon, v_prediction",
    ),
    ("scheduler/scheduler_config.json", {"clip_sample": True}, [], "clip_sample is True"),
    (
        "unet/config.json",
        {"_class_name": "UNet2DModel"},
        [],
        "_class_name is 'UNet2DModel'; supported: UNet2DConditionModel",
    ),
    ("unet/config.json", {"cross_attention_dim": 48}, [], "cross_attention_dim is 48; supported: 32, the text width"),
    ("unet/config.json", {"in_channels": 9}, [], "in_channels is 9; supported: 4, the VAE's latent_channels"),
    ("unet/config.json", {"addition_embed_type": "text_time"}, [], "addition_embed_type is 'text_time'"),
    ("unet/config.json", {"sample_size": 0}, [], "sample_size is 0; supported: a positive integer"),
    ("text_encoder/config.json", {"architectures": ["T5EncoderModel"]}, [], "architectures is ['T5EncoderModel']"),
    ("vae/config.json", {"latent_channels": ...}, [], "required key 'latent_channels' is missing"),
    ("unet/config.json", {}, ["--image-size", "100"], "image size 100: must be a positive multiple of 64"),
]


@pytest.mark.parametrize(("file", "changes", "extra", "message"), REFUSED, ids=[r[3][:40] for r in REFUSED])
def test_unsupported_config_is_one_line_naming_file_key_value(
    folder, tmp_path, capsys, monkeypatch, file, changes, extra, message
):
    import wsd.capture

    monkeypatch.setattr(wsd.capture, "capture", lambda *a, **k: pytest.fail("traced a refused folder"))
    if changes is None:
        edit(folder / "model_index.json", _class_name="StableDiffusionXLPipeline")
    else:
        edit(folder / file, **changes)
    code = main(
        ["build", "--weights", str(folder), "--target", "llvm", "--out", str(tmp_path / "d"), "--quiet", *extra]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert message in err
    assert len(err.splitlines()) == 1, err
    if changes:
        assert file.split("/")[-1] in err  # the file is named


def test_an_inpainting_folder_is_its_pipeline_and_a_9_channel_unet(folder, tmp_path, capsys):
    edit(folder / "model_index.json", _class_name="StableDiffusionInpaintPipeline")
    assert main(["build", "--weights", str(folder), "--out", str(tmp_path / "d"), "--quiet"]) == 2
    assert "in_channels is 4; supported: 9 for StableDiffusionInpaintPipeline" in capsys.readouterr().err
    edit(folder / "unet" / "config.json", in_channels=9)
    spec = check_options(BuildOptions(None, weights=str(folder)))
    assert spec.inpainting and spec.latent_channels == 4 and spec.pipeline_class == "StableDiffusionInpaintPipeline"


def test_an_lcm_folder_embeds_guidance_and_samples_with_lcm_alone(folder):
    edit(folder / "model_index.json", _class_name="LatentConsistencyModelPipeline")
    edit(folder / "unet" / "config.json", time_cond_proj_dim=32)
    spec = check_options(BuildOptions(None, weights=str(folder)))
    assert spec.guidance_embedding == 32 and not spec.inpainting
    assert [s.name for s in spec.schedulers] == ["lcm"] and spec.default_scheduler == "lcm"
    assert spec.default_guidance == 8.5  # LatentConsistencyModelPipeline's


def test_without_model_index_the_family_must_be_given(folder, tmp_path, capsys):
    (folder / "model_index.json").unlink()
    assert main(["build", "--weights", str(folder), "--out", str(tmp_path / "d"), "--quiet"]) == 2
    assert "model_index.json is missing: give the family with --model" in capsys.readouterr().err
    spec = check_options(BuildOptions("sd15", weights=str(folder)))
    assert spec.name == "sd15" and spec.text_hidden == 32  # the folder decides the shapes, not the preset


def test_folder_decides_shapes_and_name(folder):
    spec = check_options(BuildOptions(None, weights=str(folder)))
    assert (spec.name, spec.image_size, spec.latent_size, spec.text_hidden) == ("my-model", 64, 8, 32)
    assert check_options(BuildOptions(None, weights=str(folder), image_size=128)).latent_size == 16
    edit(folder / "text_encoder" / "config.json", hidden_size=24)
    edit(folder / "unet" / "config.json", cross_attention_dim=24)
    assert check_options(BuildOptions(None, weights=str(folder))).text_hidden == 24


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    index=st.one_of(
        st.dictionaries(
            st.sampled_from(["_class_name", "unet", "vae", "x"]),
            st.none() | st.integers() | st.text(max_size=30) | st.lists(st.text(max_size=5), max_size=2),
            max_size=4,
        ),
        st.lists(st.integers(), max_size=3),
        st.text(max_size=20),
    ),
    raw=st.booleans(),
)
def test_property_a_fuzzed_model_index_is_a_named_error(folder, index, raw):
    path = folder / "model_index.json"
    path.write_text(json.dumps(index)[:-1] if raw and json.dumps(index) else json.dumps(index))
    try:
        spec = spec_from_folder(folder, models.get("sd15"))
    except WsdError as exc:
        assert "model_index.json" in str(exc) and "\n" not in str(exc)
    else:
        assert (
            isinstance(index, dict) and index.get("_class_name") == "StableDiffusionPipeline" and spec.family == "sd15"
        )


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 2000) | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda c: st.lists(c, max_size=4),
    max_leaves=6,
)
FUZZED_KEYS = {
    "unet/config.json": [
        "_class_name",
        "in_channels",
        "out_channels",
        "block_out_channels",
        "cross_attention_dim",
        "sample_size",
        "addition_embed_type",
    ],
    "vae/config.json": ["_class_name", "latent_channels", "block_out_channels"],
    "text_encoder/config.json": ["architectures", "hidden_size"],
    "scheduler/scheduler_config.json": ["prediction_type", "clip_sample", "thresholding", "num_train_timesteps"],
}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_property_fuzzed_component_configs_are_named_errors(folder, data):
    file = data.draw(st.sampled_from(sorted(FUZZED_KEYS)))
    key = data.draw(st.sampled_from(FUZZED_KEYS[file]))
    value = data.draw(JSONISH)
    path = folder / file
    original = path.read_text()
    try:
        edit(path, **{key: value})
        spec_from_folder(folder, models.get("sd15"))
    except WsdError as exc:
        assert "\n" not in str(exc)
    finally:
        path.write_text(original)
