"""Folders that are none of the presets, through the CLI a user runs: build, gate, generate.

Each folder is made with seeded random weights by tests/folders.py: an SD 1.5-family folder
that changes every axis at once (a narrower text encoder, SD 2-style attention, three UNet levels,
a shallower VAE and so another image size, v-prediction with zero terminal SNR), and an SDXL with
a wider second encoder.
"""

from __future__ import annotations

import json
import subprocess
import sys

import folders
import numpy as np
import pytest

from conformance.stages import all_cases
from wsd.cli import main

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    root = tmp_path_factory.mktemp("folders")
    return {name: folders.make(name, root) for name in folders.variants() if name not in folders.KINDS}


@pytest.mark.parametrize("name", sorted(set(folders.variants()) - set(folders.KINDS)))
def test_builds_with_the_folders_own_shapes(made, tmp_path, name):
    folder = made[name]
    assert main(["build", "--weights", str(folder), "--target", "llvm", "--out", str(tmp_path), "--quiet"]) == 0
    manifest = json.loads((tmp_path / name / "manifest.json").read_text())
    unet = json.loads((folder / "unet" / "config.json").read_text())
    vae = json.loads((folder / "vae" / "config.json").read_text())
    texts = [json.loads(p.read_text()) for p in sorted(folder.glob("text_encoder*/config.json"))]
    scale = 2 ** (len(vae["block_out_channels"]) - 1)
    assert manifest["image_size"] == unet["sample_size"] * scale
    assert manifest["latent_shape"] == [1, vae["latent_channels"], unet["sample_size"], unet["sample_size"]]
    clip_out = manifest["entry_points"]["clip"]["outputs"][0]["shape"]
    assert clip_out == [1, 77, sum(t["hidden_size"] for t in texts)]  # SDXL: both encoders' states


def test_an_sdxl_folder_passes_the_native_gate(made, tmp_path):
    """Not the preset's widths: every stage, the pipeline against StableDiffusionXLPipeline."""
    reports = tmp_path / "gate"
    args = [
        "run",
        "--weights",
        str(made["sdxl-wide-second"]),
        "--",
        "--backend",
        "native",
        "--report-dir",
        str(reports),
    ]
    proc = subprocess.run(
        [sys.executable, "-m", "conformance.cli", *args], capture_output=True, text=True, timeout=1800
    )
    summary = json.loads((reports / "summary.json").read_text())
    assert proc.returncode == 0, proc.stdout[-3000:]
    every = len(all_cases("sdxl-wide-second", "sdxl"))  # each stage case of the family, once (native)
    assert summary["totals"] == {"pass": every, "fail": 0, "error": 0, "skip": 0}
    pooled = next(r for r in summary["stages"] if r["stage"] == "clip")["outputs"]["pooled"]
    assert pooled["metrics"]["rel_l2"] < 1e-5


GATED = "reshaped"  # another image size (32x32): the page and every stage take it from the manifest


@pytest.fixture(scope="module")
def gated(made, tmp_path_factory):
    reports = tmp_path_factory.mktemp("gate")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "conformance.cli",
            "run",
            "--weights",
            str(made[GATED]),
            "--",
            # the whole pipeline on this folder is test_generate_matches_diffusers_from_pretrained's
            # (`wsd generate` against from_pretrained): not run twice on SwiftShader
            "-k",
            "not pipeline",
            "--report-dir",
            str(reports),
        ],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    return proc, json.loads((reports / "summary.json").read_text())


def test_the_gate_runs_on_a_users_folder(gated, made):
    proc, summary = gated
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert summary["totals"]["fail"] == summary["totals"]["error"] == 0 and summary["totals"]["pass"] >= 20
    model = summary["model"]
    assert model["folder"] == str(made[GATED]) and model["user_folder"] and len(model["fingerprint"]) == 64
    assert model["golden"].startswith("not applied")
    assert {r["backend"] for r in summary["stages"]} == {"webgpu", "native"}
    assert {r["stage"].split("/")[0] for r in summary["stages"]} >= {"tokenizer", "clip", "unet", "vae", "scheduler"}


@pytest.mark.parametrize("sampler", [None, "euler"])
def test_generate_matches_diffusers_from_pretrained(made, tmp_path, gated, sampler):
    """`wsd generate` (the page's seed -> noise path) on a folder whose scheduler config is written
    like SD 1.5's published one (PNDM, no timestep_spacing) but for a v-predicting UNet with zero
    terminal SNR (SD 2.x-style), against diffusers' documented recipe
    `Sampler.from_config(pipe.scheduler.config)`: the default sampler (DPM-Solver++) and Euler.
    Before issue 33 both were 25-32 dB off here while the gate said 30/30."""
    import diffusers_ref
    from PIL import Image

    from conformance.metrics import compare

    folder = made[GATED]
    dist = tmp_path / "dist"
    assert main(["build", "--weights", str(folder), "--out", str(dist), "--quiet"]) == 0  # the gate's build, cached
    out = tmp_path / "image.png"
    settings = {"prompt": "a red fox in snow", "seed": 3, "steps": 4, "guidance": 7.5, "scheduler": sampler}
    # `wsd generate` as a user runs it: its own process (pytest-playwright's loop owns this thread)
    args = [sys.executable, "-m", "wsd", "generate", "--model", GATED, "--dist", str(dist)]
    args += ["--prompt", settings["prompt"], "--seed", "3", "--steps", "4", "--out", str(out)]
    args += ["--scheduler", sampler] if sampler else []
    proc = subprocess.run(args, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = np.asarray(Image.open(out).convert("RGB"), dtype=np.float64)
    manifest = json.loads((dist / GATED / "manifest.json").read_text())
    size = manifest["image_size"]
    assert f"saved {out} ({size}x{size})" in proc.stdout, proc.stdout[-2000:]  # what the CLI prints
    want = diffusers_ref.image(folder, manifest, settings)
    assert got.shape == want.shape == (manifest["image_size"], manifest["image_size"], 3)
    assert compare(want, got)["psnr"] >= 40.0
