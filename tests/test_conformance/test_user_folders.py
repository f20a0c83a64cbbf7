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
    return {name: folders.make(name, root) for name in folders.variants()}


@pytest.mark.parametrize("name", sorted(folders.variants()))
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


def gate_run(folder, reports, *pytest_args: str) -> tuple[subprocess.CompletedProcess, dict]:
    """`wsd-conformance run --weights FOLDER -- ARGS` as a user runs it; its summary."""
    args = [sys.executable, "-m", "conformance.cli", "run", "--weights", str(folder), "--"]
    proc = subprocess.run(
        [*args, *pytest_args, "--report-dir", str(reports)], capture_output=True, text=True, timeout=1800
    )
    return proc, json.loads((reports / "summary.json").read_text())


def test_an_inpainting_folder_passes_against_its_inpainting_pipeline(made, tmp_path):
    """A 9-channel UNet (StableDiffusionInpaintPipeline): the page (WebGPU) and the native loop start
    from the image and the mask against `from_pretrained(folder)` of the folder's own inpainting
    pipeline; only the cases with a mask are its pipeline cases."""
    proc, summary = gate_run(made["inpaint"], tmp_path / "r", "-k", "pipeline or unet/t981")
    assert proc.returncode == 0, proc.stdout[-3000:]
    rows = {(r["stage"], r["backend"]) for r in summary["stages"]}
    want = {"pipeline/inpaint-dpm-solver++-4", "pipeline/inpaint-euler-a-4-s0.75", "unet/t981-g7.5"}
    assert rows == {(s, b) for s in want for b in ("webgpu", "native")}, rows


def test_an_inverted_mask_fails_the_inpainting_gate(made, tmp_path):
    """The `mask-inverted` fault (the UNet given 1 - mask), built into the folder's own build."""
    out = tmp_path / "bad"
    build = ["build", "--weights", str(made["inpaint"]), "--target", "llvm", "--inject", "mask-inverted@unet"]
    assert main([*build, "--out", str(out), "--quiet"]) == 0
    built = f"native={out / 'inpaint'}"
    proc, summary = gate_run(
        made["inpaint"], tmp_path / "r", "--built", built, "--backend", "native", "-k", "inpaint-dpm"
    )
    assert proc.returncode != 0
    (row,) = summary["stages"]
    assert row["stage"] == "pipeline/inpaint-dpm-solver++-4" and row["status"] == "fail", row


def test_an_sdxl_inpainting_folder_passes_natively(made, tmp_path):
    """StableDiffusionXLInpaintPipeline: its time ids take the aesthetic scores' form (unused
    without requires_aesthetics_score), the rest as SD 1.5's."""
    proc, summary = gate_run(made["sdxl-inpaint"], tmp_path / "r", "--backend", "native", "-k", "pipeline")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert {r["stage"] for r in summary["stages"]} == {
        "pipeline/inpaint-dpm-solver++-4",
        "pipeline/inpaint-euler-a-4-s0.75",
    }


@pytest.fixture(scope="module")
def inpaint_dists(made, tmp_path_factory):
    """The inpainting folder built for WebGPU (the page) and natively (the loop's twin)."""
    out = tmp_path_factory.mktemp("inpaint-dists")
    for target in ("webgpu", "llvm"):
        args = ["build", "--weights", str(made["inpaint"]), "--target", target, "--out", str(out / target), "--quiet"]
        assert main(args) == 0
    return out / "webgpu", out / "llvm" / "inpaint"


def test_generate_inpaints_from_a_picture_and_a_mask(made, tmp_path, inpaint_dists):
    """`wsd generate --init-image --mask` through the page's own file inputs: the same image as the
    native loop with the page's seeded noise (the numeric check against diffusers is the gate's);
    without --mask an inpainting model is refused, naming the flag."""
    from PIL import Image

    from conformance.backends import NativeBackend
    from conformance.metrics import compare
    from conformance.stages import init_image, init_mask

    dist, native = inpaint_dists
    Image.fromarray(init_image(64, 5)).save(tmp_path / "start.png")
    Image.fromarray(init_mask(64, 5), "L").save(tmp_path / "mask.png")
    args = [sys.executable, "-m", "wsd", "generate", "--model", "inpaint", "--dist", str(dist), "--prompt", "a cat"]
    args += ["--seed", "3", "--steps", "4", "--init-image", str(tmp_path / "start.png")]
    proc = subprocess.run(
        [*args, "--mask", str(tmp_path / "mask.png"), "--out", str(tmp_path / "out.png")],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = np.asarray(Image.open(tmp_path / "out.png").convert("RGB"), dtype=np.float64)
    start = {"init_image": init_image(64, 5), "mask_image": np.repeat(init_mask(64, 5)[..., None], 3, axis=-1)}
    want = NativeBackend(native).generate("a cat", "", 4, 7.5, "dpm-solver++", seed=3, start=start)["image"]
    assert compare(want.astype(np.float64), got)["psnr"] >= 40.0

    refused = subprocess.run([*args, "--out", str(tmp_path / "x.png")], capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "--mask" in refused.stderr and "inpainting model" in refused.stderr


def test_the_mask_brush_paints_what_the_model_repaints(browser, kit, inpaint_dists, tmp_path):
    """The page's brush: a drag over the picture marks a region (the red wash), Generate inpaints it."""
    from PIL import Image

    from conformance.stages import init_image
    from wsd.app import open_app
    from wsd.host.server import app_mounts, serve
    from wsd.paths import repo_root

    dist, _ = inpaint_dists
    Image.fromarray(init_image(64, 6)).save(tmp_path / "start.png")
    with serve(app_mounts(kit.bundle, dist)) as url:
        page = browser.new_page()
        open_app(page, url, "inpaint", 600)
        assert page.is_visible("#mask-row") and page.input_value("#strength") == "1"
        page.set_input_files("#init-image", str(tmp_path / "start.png"))
        page.wait_for_function("window.wsdApp.initImage !== null")
        assert page.evaluate("window.wsdApp.maskCoverage()") == 0
        box = page.locator("#mask-canvas").bounding_box()
        page.mouse.move(box["x"] + 40, box["y"] + 128)
        page.mouse.down()
        page.mouse.move(box["x"] + 216, box["y"] + 128, steps=12)
        page.mouse.up()
        covered = page.evaluate("window.wsdApp.maskCoverage()")
        assert 0.05 < covered < 0.5, covered  # a band across the middle, not the whole picture
        page.select_option("#steps", "2")
        page.click("#generate")
        page.wait_for_function(
            "window.wsdApp.generations > 0 || !document.getElementById('error').hidden", timeout=600_000
        )
        assert page.evaluate("document.getElementById('error').hidden"), page.evaluate("window.wsdApp.lastError")
        (repo_root() / "reports" / "e2e").mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(repo_root() / "reports" / "e2e" / "app-inpaint.png"), full_page=True)
        page.close()
