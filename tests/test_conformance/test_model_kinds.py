"""Other kinds of model, each a folder made by tests/folders.py and gated as a user would: an
inpainting UNet (StableDiffusion(XL)InpaintPipeline, 9 input channels) and an LCM-distilled one
(LatentConsistencyModelPipeline, guidance as an embedding). Each against its own diffusers
pipeline `from_pretrained(folder)`, with a fault built in that the gate must catch; `wsd generate`
and the page's mask brush on the inpainting one. (A file of its own: pytest-xdist hands each file to
one worker, and these beside tests/test_conformance/test_user_folders.py would make one long file.)
"""

from __future__ import annotations

import json
import subprocess
import sys

import folders
import numpy as np
import pytest

from wsd.cli import main

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    root = tmp_path_factory.mktemp("kinds")
    return {name: folders.make(name, root) for name in folders.KINDS}


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
    """The `mask-inverted` fault (the UNet given 1 - mask), built into the folder's UNet alone (it
    fails the inpainting pipeline cases as well: measured, benchmarks/results/README.md)."""
    out = tmp_path / "bad"
    build = ["build", "--weights", str(made["inpaint"]), "--target", "llvm", "--inject", "mask-inverted@unet"]
    assert main([*build, "--entry", "unet", "--out", str(out), "--quiet"]) == 0
    built = f"native={out / 'inpaint'}"
    proc, summary = gate_run(made["inpaint"], tmp_path / "r", "--built", built, "--backend", "native", "-k", "t981")
    assert proc.returncode != 0
    (row,) = summary["stages"]
    assert row["stage"] == "unet/t981-g7.5" and row["status"] == "fail", row


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


def test_an_lcm_folder_passes_against_its_lcm_pipeline_and_catches_an_unshifted_guidance(made, tmp_path):
    """An LCM-distilled UNet (LatentConsistencyModelPipeline): guidance as LCM's embedding, the prompt
    alone, LCM the one sampler. Natively against from_pretrained(folder) (the WebGPU figures:
    benchmarks/results/gate-lcm-webgpu-2026-12-06.json); then the `lcm-guidance-unshifted` fault
    (guidance embedded as g, not g - 1) built into the UNet alone fails it (the pipeline too: measured)."""
    proc, summary = gate_run(made["lcm"], tmp_path / "r", "--backend", "native", "-k", "unet or pipeline or scheduler")
    assert proc.returncode == 0, proc.stdout[-3000:]
    stages = {r["stage"] for r in summary["stages"]}
    assert stages == {
        "unet/t981-g7.5",
        "unet/t500-g1",
        "unet/t1-g7.5",
        "unet/t500-g0",
        "scheduler/lcm",
        "pipeline/lcm-4",
    }

    out = tmp_path / "bad"
    build = ["build", "--weights", str(made["lcm"]), "--target", "llvm", "--inject", "lcm-guidance-unshifted@unet"]
    assert main([*build, "--entry", "unet", "--out", str(out), "--quiet"]) == 0
    args = ["--built", f"native={out / 'lcm'}", "--backend", "native", "-k", "t981"]
    proc, summary = gate_run(made["lcm"], tmp_path / "bad-r", *args)
    assert proc.returncode != 0
    assert [(r["stage"], r["status"]) for r in summary["stages"]] == [("unet/t981-g7.5", "fail")]


def test_generate_refuses_what_an_lcm_model_has_no_reference_for(made, tmp_path):
    """LCM's pipeline takes no negative prompt, and its img2img is not gated: the page's option check
    refuses both before any browser starts."""
    dist = tmp_path / "dist"
    assert main(["build", "--weights", str(made["lcm"]), "--entry", "clip", "--out", str(dist), "--quiet"]) == 0
    args = [sys.executable, "-m", "wsd", "generate", "--model", "lcm", "--dist", str(dist), "--prompt", "a cat"]
    proc = subprocess.run([*args, "--negative", "blurry", "--steps", "4"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "--negative" in proc.stderr and "no negative prompt" in proc.stderr, proc.stderr
    from PIL import Image

    from conformance.stages import init_image

    Image.fromarray(init_image(64, 0)).save(tmp_path / "start.png")
    proc = subprocess.run(
        [*args, "--init-image", str(tmp_path / "start.png"), "--steps", "4"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2 and "--init-image" in proc.stderr and "not supported" in proc.stderr, proc.stderr


def test_an_lcm_sdxl_folder_passes_against_its_sdxl_pipeline(made, tmp_path):
    """LCM-SDXL as it ships (StableDiffusionXLPipeline, LCMScheduler, a UNet with time_cond_proj_dim):
    guidance embedded, the prompt's embeddings, pooled embeddings and time ids alone. Natively against
    from_pretrained(folder) (the WebGPU figures: benchmarks/results/gate-sdxl-lcm-webgpu-2026-12-06.json)."""
    proc, summary = gate_run(made["sdxl-lcm"], tmp_path / "r", "--backend", "native", "-k", "unet or pipeline")
    assert proc.returncode == 0, proc.stdout[-3000:]
    stages = {r["stage"] for r in summary["stages"]}
    assert {"unet/t981-g7.5", "unet/t500-g0", "pipeline/lcm-4"} <= stages
    assert not any(s.startswith(("pipeline/dpm", "pipeline/img2img", "pipeline/lora")) for s in stages)
