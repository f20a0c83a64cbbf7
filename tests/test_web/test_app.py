"""The browser app end to end: generate through the page, equal to diffusers' own pipeline
from the same folder, seed and latents; memory flat over five generations; offline reload;
one test per error path."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import numpy as np
import pytest

from conformance.faults import copy_dist, rewrite
from wsd.app import canvas_png, open_app, run_generation
from wsd.host import browser as wsd_browser
from wsd.host.server import app_mounts, serve
from wsd.paths import repo_root, web_dir

pytestmark = [pytest.mark.e2e, pytest.mark.browser]
E2E = repo_root() / "reports" / "e2e"
SETTINGS = {
    "prompt": "a photo of an astronaut riding a horse on mars",
    "negative": "blurry",
    "steps": 4,
    "seed": 1,
    "guidance": 7.5,
    "scheduler": "dpm-solver++",
}
# Two steps still run the text encoder, the loop and the decoder each time (a leak per step or
# per generation still grows over five); four cost ~20 s more on SwiftShader.
SHORT = {**SETTINGS, "steps": 2}


@pytest.fixture(scope="module")
def app_dist(tmp_path_factory):
    from wsd.build import BuildOptions, build

    out = tmp_path_factory.mktemp("appdist")
    for model in ("sd15-tiny", "sdxl-tiny"):  # both families in the picker
        build(BuildOptions(model, random_init=True), out, echo=lambda *_: None, progress=False)
    return out


@pytest.fixture(scope="module")
def served(app_dist, kit):
    with serve(app_mounts(kit.bundle, app_dist)) as url:
        yield url


@pytest.fixture(scope="module")
def app_page(browser, served):
    context = browser.new_context()
    page = context.new_page()
    open_app(page, served, "sd15-tiny", 600)
    yield page
    context.close()


def pixels(png: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def test_generate_equals_diffusers_from_pretrained(app_page, app_dist, tiny_folder):
    import diffusers_ref

    from conformance.metrics import compare

    last = run_generation(app_page, SETTINGS, 600)
    got = pixels(canvas_png(app_page))
    E2E.mkdir(parents=True, exist_ok=True)
    app_page.screenshot(path=str(E2E / "app-after-generate.png"), full_page=True)
    assert got.shape == (64, 64, 3) and got.std() > 5  # a non-trivial image
    assert last["timings"]["steps_ms"] and len(last["timings"]["steps_ms"]) == 4

    manifest = json.loads((app_dist / "sd15-tiny" / "manifest.json").read_text())
    want = diffusers_ref.image(tiny_folder, manifest, SETTINGS)
    assert compare(want, got.astype(np.float64))["psnr"] >= 40.0


def tab_to(page, element_id: str, limit: int = 20) -> None:
    """Press Tab until `element_id` has the focus, as a keyboard user would."""
    for _ in range(limit):
        if page.evaluate("document.activeElement && document.activeElement.id") == element_id:
            return
        page.keyboard.press("Tab")
    raise AssertionError(f"#{element_id} is not reachable with Tab")


def test_a_few_step_preset_generates_from_the_keyboard_alone(app_page):
    """No mouse: Tab to the preset, pick Turbo with the arrow keys (Euler Ancestral, 1 step,
    guidance 0: SD-Turbo's own setting), Tab to Generate and press Enter."""
    page = app_page
    before = page.evaluate("window.wsdApp.generations")
    page.evaluate("document.activeElement && document.activeElement.blur()")
    tab_to(page, "preset")
    labels = page.evaluate("[...document.getElementById('preset').options].map((o) => o.value)")
    assert labels == ["", "lcm", "turbo"], labels
    while page.evaluate("document.getElementById('preset').value") != "turbo":
        page.keyboard.press("ArrowDown")
    form = page.evaluate("['scheduler', 'steps', 'guidance'].map((id) => document.getElementById(id).value)")
    assert form == ["euler-a", "1", "0"], form
    tab_to(page, "generate")
    page.keyboard.press("Enter")
    page.wait_for_function(
        f"window.wsdApp.generations > {before} || !document.getElementById('error').hidden", timeout=600_000
    )
    assert page.evaluate("document.getElementById('error').hidden"), page.evaluate("window.wsdApp.lastError")
    assert len(page.evaluate("window.wsdApp.last.timings.steps_ms")) == 1
    E2E.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(E2E / "app-turbo-preset.png"), full_page=True)


def test_sdxl_generates_equal_to_diffusers_from_pretrained(browser, served, app_dist):
    """The same page and loop on SDXL (two tokenizers, pooled embeddings, time ids from the
    manifest's generation plan), against StableDiffusionXLPipeline.from_pretrained."""
    import diffusers_ref

    from conformance.metrics import compare
    from wsd import models
    from wsd.build import random_folder

    context = browser.new_context()
    try:
        page = context.new_page()
        open_app(page, served, "sdxl-tiny", 600)
        assert page.eval_on_selector("#model", "s => [...s.options].map(o => o.value)") == ["sd15-tiny", "sdxl-tiny"]
        assert page.input_value("#guidance") == "5"  # SDXL's default guidance, from the manifest
        settings = {**SETTINGS, "scheduler": "euler", "negative": "", "guidance": None}  # zeros for the empty negative
        run_generation(page, settings, 600)
        got = pixels(canvas_png(page))
        page.screenshot(path=str(E2E / "app-sdxl-after-generate.png"), full_page=True)
    finally:
        context.close()
    manifest = json.loads((app_dist / "sdxl-tiny" / "manifest.json").read_text())
    want = diffusers_ref.image(random_folder(models.get("sdxl-tiny"), 0, echo=lambda *_: None), manifest, settings)
    assert got.shape == (64, 64, 3) and got.std() > 5
    assert compare(want, got.astype(np.float64))["psnr"] >= 40.0


def test_memory_is_flat_over_five_generations(app_page):
    sizes = [app_page.evaluate("window.wsdApp.memory()")]  # after the model load and one generation
    for _ in range(5):
        run_generation(app_page, SHORT, 600)
        sizes.append(app_page.evaluate("window.wsdApp.memory()"))
    E2E.mkdir(parents=True, exist_ok=True)
    (E2E / "memory.json").write_text(json.dumps(sizes, indent=1))
    print("GPU memory after each generation:", sizes)
    first, last = sizes[1], sizes[-1]
    assert last["bytes"] <= first["bytes"] * 1.05 and last["buffers"] <= first["buffers"] * 1.05, sizes


def test_img2img_starts_from_a_chosen_file_as_the_native_loop_does(app_page, tmp_path):
    """`--init-image` through the page's own file input: the page reads the PNG's pixels exactly
    and runs the same img2img loop as the native module (both with the page's seeded noise; the
    numeric check against StableDiffusionImg2ImgPipeline is the gate's img2img cases). A picture of
    another size is refused, naming both sizes."""
    from PIL import Image

    from conformance.backends import NativeBackend
    from conformance.metrics import compare
    from conformance.stages import init_image
    from wsd.build import BuildOptions, build
    from wsd.errors import WsdError

    picture = tmp_path / "start.png"
    Image.fromarray(init_image(64, 3)).save(picture)
    settings = {**SETTINGS, "init_image": picture, "strength": 0.5}
    try:
        last = run_generation(app_page, settings, 600)
        got = pixels(canvas_png(app_page))
        E2E.mkdir(parents=True, exist_ok=True)
        app_page.screenshot(path=str(E2E / "app-img2img.png"), full_page=True)
        Image.fromarray(init_image(32, 3)).save(tmp_path / "small.png")
        with pytest.raises(WsdError, match=r"32x32, the model makes 64x64 images"):
            run_generation(app_page, {**settings, "init_image": tmp_path / "small.png"}, 600)
    finally:
        app_page.click("#init-clear")  # the next tests generate from noise
    assert len(last["timings"]["steps_ms"]) == 2  # strength 0.5 of 4 steps

    native = build(BuildOptions("sd15-tiny", random_init=True, target="llvm"), tmp_path / "n", progress=False).out
    want = NativeBackend(native).generate(
        SETTINGS["prompt"],
        SETTINGS["negative"],
        4,
        7.5,
        "dpm-solver++",
        seed=1,
        start={"init_image": init_image(64, 3), "strength": 0.5},
    )["image"]
    assert compare(want.astype(np.float64), got.astype(np.float64))["psnr"] >= 40.0


def test_a_lora_is_merged_switched_and_removed_as_the_native_loop_does(app_page, tmp_path, tiny_folder, sdxl_lora):
    """The LoRA picker (what `wsd generate --lora FILE:SCALE` fills): the page merges the file into
    the open model's weights, equal to the native module with the same LoRA (the numeric check
    against diffusers' fuse_lora is the gate's lora case); removing it gives back the build's own
    image exactly; a LoRA of another model is named and changes nothing."""
    from PIL import Image

    from conformance.backends import NativeBackend
    from conformance.metrics import compare
    from conformance.reference.lora import make_lora
    from wsd.build import BuildOptions, build
    from wsd.errors import WsdError

    path = make_lora(tiny_folder, tmp_path / "lora", seed=0)
    run_generation(app_page, SETTINGS, 600)
    own = pixels(canvas_png(app_page))
    try:
        run_generation(app_page, {**SETTINGS, "lora": (path, 0.7)}, 600)
        got = pixels(canvas_png(app_page))
        assert app_page.evaluate("window.wsdApp.lora")["layers"] > 20
        E2E.mkdir(parents=True, exist_ok=True)
        app_page.screenshot(path=str(E2E / "app-lora.png"), full_page=True)
        with pytest.raises(WsdError, match=r"WSD_LORA: .*names no layer this model lets a LoRA change"):
            run_generation(app_page, {**SETTINGS, "lora": (sdxl_lora, 1.0)}, 600)
    finally:
        if app_page.is_visible("#lora-clear"):  # a refused pick has cleared the choice already
            app_page.click("#lora-clear")
    assert not app_page.is_visible("#lora-clear") and app_page.evaluate("window.wsdApp.lora") is None
    run_generation(app_page, SETTINGS, 600)  # the page puts the build's own weights back first
    np.testing.assert_array_equal(pixels(canvas_png(app_page)), own)  # the build's own weights, bit for bit

    native = NativeBackend(
        build(BuildOptions("sd15-tiny", random_init=True, target="llvm"), tmp_path / "n", progress=False).out
    )
    native.set_lora(path, 0.7)
    want = native.generate(SETTINGS["prompt"], SETTINGS["negative"], 4, 7.5, "dpm-solver++", seed=1)["image"]
    assert compare(want.astype(np.float64), got.astype(np.float64))["psnr"] >= 40.0
    assert compare(own.astype(np.float64), got.astype(np.float64))["psnr"] < 30.0  # the LoRA shows
    Image.fromarray(got).save(tmp_path / "with-lora.png")


@pytest.fixture(scope="module")
def sdxl_lora(tmp_path_factory):
    """A LoRA made for sdxl-tiny: its layers are not sd15-tiny's."""
    from conformance.reference.lora import make_lora
    from wsd import models
    from wsd.build import random_folder

    folder = random_folder(models.get("sdxl-tiny"), 0, echo=lambda *_: None)
    return make_lora(folder, tmp_path_factory.mktemp("sdxl-lora"), seed=0)


def test_reload_offline_still_generates(app_page):
    run_generation(app_page, SHORT, 600)
    before = pixels(canvas_png(app_page))
    app_page.context.set_offline(True)
    try:
        app_page.reload()
        app_page.wait_for_function("window.wsdApp && window.wsdApp.ready", timeout=600_000)
        assert app_page.evaluate("window.wsdApp.lastError") is None
        run_generation(app_page, SHORT, 600)
        assert np.array_equal(pixels(canvas_png(app_page)), before)
    finally:
        app_page.context.set_offline(False)


# --- error paths: each one fails before the long pipeline compile ----------------------


def broken_copy(app_dist: Path, tmp_path: Path, change) -> Path:
    """A hard-linked copy of the build (changed files rewritten, never edited in place)."""
    root = tmp_path / "dist"
    change(copy_dist(app_dist / "sd15-tiny", root / "sd15-tiny"))
    return root


def edit_manifest(folder: Path, change) -> None:
    manifest = json.loads((folder / "manifest.json").read_text())
    change(manifest)
    rewrite(folder / "manifest.json", json.dumps(manifest).encode())


def error_of(browser, kit, dist: Path, init_script: str | None = None) -> dict:
    with serve(app_mounts(kit.bundle, dist)) as url:
        context = browser.new_context()
        try:
            if init_script:
                context.add_init_script(init_script)
            page = context.new_page()
            page.goto(f"{url}/?model=sd15-tiny")
            page.wait_for_function("window.wsdApp && window.wsdApp.ready", timeout=120_000)
            shown = page.evaluate("document.getElementById('error').hidden") is False
            return {**(page.evaluate("window.wsdApp.lastError") or {}), "shown": shown}
        finally:
            context.close()


def test_no_navigator_gpu_names_browsers_and_flags(browser, app_dist, kit):
    err = error_of(browser, kit, app_dist, init_script="delete Navigator.prototype.gpu;")
    assert err["code"] == "WSD_NO_WEBGPU" and err["shown"]
    assert "--enable-unsafe-webgpu" in err["advice"] and "Chrome" in err["advice"]


def test_webgpu_disabled_means_no_adapter(playwright, app_dist, kit):
    browser = playwright.chromium.launch(**wsd_browser.launch_options(webgpu=False))
    try:
        err = error_of(browser, kit, app_dist)
    finally:
        browser.close()
    assert err["code"] == "WSD_NO_ADAPTER" and err["shown"]
    assert "driver" in err["advice"]


def test_adapter_limit_too_small_names_limit_and_values(browser, kit, app_dist, tmp_path):
    dist = broken_copy(
        app_dist,
        tmp_path,
        lambda f: edit_manifest(f, lambda m: m["requirements"]["limits"].update(maxStorageBufferBindingSize=2**40)),
    )
    err = error_of(browser, kit, dist)
    assert err["code"] == "WSD_LIMIT", err
    assert "maxStorageBufferBindingSize" in err["message"] and str(2**40) in err["message"]


def test_fp16_build_without_shader_f16(browser, kit, app_dist, tmp_path):
    dist = broken_copy(
        app_dist, tmp_path, lambda f: edit_manifest(f, lambda m: m["requirements"].update(features=["shader-f16"]))
    )
    assert error_of(browser, kit, dist)["code"] == "WSD_NO_F16"


def test_tampered_shard_is_refused(browser, kit, app_dist, tmp_path):
    def flip(folder):
        shard = folder / "params_shard_0.bin"
        data = bytearray(shard.read_bytes())
        data[100] ^= 0xFF
        rewrite(shard, bytes(data))

    err = error_of(browser, kit, broken_copy(app_dist, tmp_path, flip))
    assert err["code"] == "WSD_INTEGRITY" and "params_shard_0.bin" in err["message"] and "refused" in err["message"]


def test_missing_shard_is_a_fetch_error(browser, kit, app_dist, tmp_path):
    err = error_of(browser, kit, broken_copy(app_dist, tmp_path, lambda f: (f / "params_shard_0.bin").unlink()))
    assert err["code"] == "WSD_FETCH" and "params_shard_0.bin: HTTP 404" in err["message"]


def test_missing_tokenizer_file(browser, kit, app_dist, tmp_path):
    err = error_of(browser, kit, broken_copy(app_dist, tmp_path, lambda f: (f / "tokenizer" / "vocab.json").unlink()))
    assert err["code"] == "WSD_TOKENIZER" and "vocab.json" in err["message"]


def test_a_new_offline_shell_deletes_the_old_ones(browser, kit, app_dist):
    """sw.js keeps one shell cache: each SHELL bump left the previous one behind for good."""
    shell = re.search(r'const SHELL = "([^"]+)"', (web_dir() / "app" / "sw.js").read_text()).group(1)
    with serve(app_mounts(kit.bundle, app_dist)) as url:
        context = browser.new_context()
        try:
            context.add_init_script("delete Navigator.prototype.gpu;")  # the page stops before any compile
            page = context.new_page()
            page.goto(f"{url}/")
            page.evaluate("navigator.serviceWorker.ready.then(() => caches.open('wsd-shell-v0'))")
            assert "wsd-shell-v0" in page.evaluate("caches.keys()")
            page.evaluate("navigator.serviceWorker.getRegistration().then((r) => r.unregister())")
            page.reload()  # registers the worker again: a fresh install and activate
            page.wait_for_function("navigator.serviceWorker.controller !== null", timeout=60_000)
            keys = page.evaluate("caches.keys()")
        finally:
            context.close()
    assert shell in keys and [k for k in keys if k.startswith("wsd-shell-")] == [shell], keys
