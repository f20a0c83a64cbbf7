"""`wsd build` / `wsd verify` from the command line (the built bundle on WebGPU against torch is the
gate's unet stage: conformance/gate)."""

from __future__ import annotations

import json
import shutil

import pytest

from wsd.cli import main


def test_unknown_model_exits_2(capsys, tmp_path):
    assert main(["build", "--model", "sd14", "--random-init", "--out", str(tmp_path), "--quiet"]) == 2
    assert "unknown model 'sd14'" in capsys.readouterr().err


def test_unsupported_dtype_exits_2(capsys, tmp_path):
    assert main(["build", "--model", "sd15-tiny", "--random-init", "--dtype", "int8", "--out", str(tmp_path)]) == 2
    assert "unsupported dtype 'int8'" in capsys.readouterr().err


def test_missing_subfolder_exits_2(capsys, tmp_path, tiny_folder):
    folder = tmp_path / "model"
    shutil.copytree(tiny_folder, folder)
    shutil.rmtree(folder / "text_encoder")
    code = main(
        [
            "build",
            "--model",
            "sd15-tiny",
            "--weights",
            str(folder),
            "--target",
            "llvm",
            "--out",
            str(tmp_path / "dist"),
            "--quiet",
        ]
    )
    assert code == 2
    assert "text_encoder: subfolder is missing" in capsys.readouterr().err


@pytest.fixture(scope="module")
def webgpu_dist(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    assert main(["build", "--model", "sd15-tiny", "--random-init", "--out", str(out), "--quiet"]) == 0
    return out / "sd15-tiny"


@pytest.mark.e2e
def test_webgpu_build_verifies(webgpu_dist, capsys):
    assert main(["verify", str(webgpu_dist)]) == 0
    manifest = json.loads((webgpu_dist / "manifest.json").read_text())
    assert manifest["wgsl"]["validated"] and manifest["wgsl"]["shaders"] > 100
    assert (webgpu_dist / "sd15-tiny.wasm").stat().st_size < 64 * 2**20  # weights live in shards, not the wasm
    # Truncate a shard of a private copy: the copy is damaged, the cache and other dists are not.
    copy = webgpu_dist.parent.parent / "copy"
    assert main(["build", "--model", "sd15-tiny", "--random-init", "--out", str(copy), "--quiet"]) == 0
    shard = copy / "sd15-tiny" / "params_shard_0.bin"
    with open(shard, "r+b") as fh:  # in place, as a user's tool would
        fh.truncate(shard.stat().st_size - 1)
    assert main(["verify", str(copy / "sd15-tiny")]) == 1
    assert "params_shard_0.bin: size" in capsys.readouterr().err
    assert main(["verify", str(webgpu_dist)]) == 0
