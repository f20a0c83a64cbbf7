"""`wsd serve` and `wsd generate`: the browser app served locally, and driven headless.

`generate` opens the same page a person uses, fills the same form, presses Generate, and
saves the canvas: what it writes is what the page draws.
"""

from __future__ import annotations

import base64
import contextlib
import json
import math
import time
from pathlib import Path

from wsd.errors import WsdError

# The page's option names (web/lib/pipeline.js checkOptions) and the CLI flag for each.
FLAGS = {
    "prompt": "--prompt",
    "negativePrompt": "--negative",
    "scheduler": "--scheduler",
    "steps": "--steps",
    "seed": "--seed",
    "guidance": "--guidance",
    "strength": "--strength",
    "initImage": "--init-image",
    "maskImage": "--mask",
}


def serve_forever(dist: Path, host: str, port: int, echo=print) -> None:
    from wsd.host.server import app_mounts, serve
    from wsd.manifest import require_whole
    from wsd.webrt import ensure_kit

    built = sorted(p.parent for p in Path(dist).glob("*/manifest.json"))
    if not built:
        raise WsdError(f"{dist}: no built model (no */manifest.json); run `wsd build --model sd15-tiny --random-init`")
    for model in built:  # a damaged model is refused here, not half-loaded by a page
        require_whole(model)
    with serve(app_mounts(ensure_kit(echo=echo).bundle, Path(dist)), host=host, port=port) as url:
        echo(f"serving {dist} at {url}/  (Ctrl-C to stop)")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            echo("stopped")


FORM_WAIT_MS = 10_000  # a form field that is not there after this is not coming


def _select(page, field: str, value: str) -> None:
    """Pick an option of a <select>, or say which options the page offers (never a driver's log)."""
    offered = page.eval_on_selector(f"#{field}", "s => [...s.options].map(o => o.value)")
    if value not in offered:
        raise WsdError(f"the page offers no {field} {value!r}; it offers {', '.join(offered)}")
    page.select_option(f"#{field}", value, timeout=FORM_WAIT_MS)


def fill_form(page, settings: dict) -> None:
    if settings.get("lora"):  # the page's LoRA picker: the scale first, then the file (merged on pick)
        path, scale = settings["lora"]
        page.fill("#lora-scale", str(scale), timeout=FORM_WAIT_MS)
        page.evaluate("() => { window.wsdApp.lora = null; document.getElementById('error').hidden = true; }")
        page.set_input_files("#lora-file", str(path), timeout=FORM_WAIT_MS)
        page.wait_for_function(
            "window.wsdApp.lora !== null || !document.getElementById('error').hidden", timeout=FORM_WAIT_MS * 6
        )
        err = page.evaluate("document.getElementById('error').hidden ? null : window.wsdApp.lastError")
        if err:  # refused on pick: never generate without the LoRA that was asked for
            raise WsdError(f"{err.get('code')}: {err.get('title')}: {err.get('message')} ({err.get('advice')})")
    if settings.get("init_image"):  # the page's own file input, as a person picks the file
        page.set_input_files("#init-image", str(settings["init_image"]), timeout=FORM_WAIT_MS)
        page.wait_for_function("window.wsdApp.initImage !== null", timeout=FORM_WAIT_MS)
        if settings.get("strength") is not None:  # else the page's default for the model
            page.fill("#strength", str(settings["strength"]), timeout=FORM_WAIT_MS)
    if settings.get("mask"):
        page.set_input_files("#mask-image", str(settings["mask"]), timeout=FORM_WAIT_MS)
        page.wait_for_function("window.wsdApp.maskImage !== null", timeout=FORM_WAIT_MS)
    page.fill("#prompt", settings["prompt"], timeout=FORM_WAIT_MS)
    page.fill("#negative", settings.get("negative", ""), timeout=FORM_WAIT_MS)
    if settings.get("scheduler"):
        _select(page, "scheduler", settings["scheduler"])
    _select(page, "steps", str(settings["steps"]))
    page.fill("#seed", str(settings["seed"]), timeout=FORM_WAIT_MS)
    if settings.get("guidance") is not None:  # else the model's default, which the page fills in
        page.fill("#guidance", str(settings["guidance"]), timeout=FORM_WAIT_MS)
    # The browser's own form checks (min/max) block the submit silently: say what they found.
    refused = page.evaluate(
        """() => [...document.querySelectorAll('#form input, #form select, #form textarea')]
            .filter((e) => !e.checkValidity())
            .map((e) => `${e.id} ${JSON.stringify(e.value)}: ${e.validationMessage}`)"""
    )
    if refused:
        raise WsdError(f"the page refused the form: {'; '.join(refused)}")


def run_generation(page, settings: dict, timeout_s: float, on_status=None) -> dict:
    """Press Generate on an open app page and wait for the image (or the page's error)."""
    before = page.evaluate("window.wsdApp.generations")
    fill_form(page, settings)
    page.click("#generate")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = page.evaluate(
            """() => ({done: window.wsdApp.generations, error: window.wsdApp.lastError,
                      status: document.getElementById('status').textContent,
                      fraction: document.getElementById('progress').value,
                      errorShown: !document.getElementById('error').hidden})"""
        )
        if on_status:
            on_status(state["status"], state["fraction"])
        if state["errorShown"]:
            err = state["error"] or {}
            raise WsdError(f"{err.get('code')}: {err.get('title')}: {err.get('message')} ({err.get('advice')})")
        if state["done"] > before:
            return page.evaluate("window.wsdApp.last")
        time.sleep(0.2)
    raise WsdError(f"no image after {timeout_s:.0f} s (last status: {state['status']})")


def canvas_png(page) -> bytes:
    data = page.evaluate("document.getElementById('canvas').toDataURL('image/png')")
    return base64.b64decode(data.split(",", 1)[1])


def open_app(browser_page, url: str, model: str, timeout_s: float) -> None:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        browser_page.goto(f"{url}/?model={model}", timeout=timeout_s * 1000)
        browser_page.wait_for_function("window.wsdApp && window.wsdApp.ready", timeout=timeout_s * 1000)
    except PlaywrightTimeout:
        status = browser_page.evaluate("document.getElementById('status')?.textContent ?? '(no status)'")
        raise WsdError(
            f"the app did not open {model} within {timeout_s:.0f} s (last status: {status}); --timeout sets the wait"
        ) from None
    err = browser_page.evaluate("window.wsdApp.lastError")
    if err:
        raise WsdError(f"{err['code']}: {err['title']}: {err['message']} ({err['advice']})")


def built_model(dist: Path, model: str) -> Path:
    """dist/model, refused by name when it was never built or a file no longer matches its manifest."""
    from wsd.manifest import require_whole

    folder = Path(dist) / model
    if not (folder / "manifest.json").is_file():
        raise WsdError(f"{dist}/{model}: not built; run `wsd build --model {model} --random-init --out {dist}`")
    require_whole(folder)
    return folder


def page_options(settings: dict, pixels: bool = True) -> dict:
    """`wsd generate`'s settings as the page's generate() options (unset ones left to the page).
    An --init-image goes as its RGB pixels on the wire (`pixels`), or as its size alone for the
    option checks."""
    options = {"prompt": settings["prompt"], "negativePrompt": settings.get("negative") or ""}
    options.update({k: settings[k] for k in ("steps", "seed", "guidance", "scheduler") if settings.get(k) is not None})
    for key, flag in (("init_image", "initImage"), ("mask", "maskImage")):
        if not settings.get(key):
            continue
        rgb = init_image_pixels(Path(settings[key]), FLAGS[flag])
        if pixels:
            from wsd.host.modules import encode

            options[flag] = encode(rgb.astype("float32"))
        else:
            options[flag] = {"width": rgb.shape[1], "height": rgb.shape[0]}
    if settings.get("strength") is not None:
        options["strength"] = settings["strength"]
    return options


def init_image_pixels(path: Path, flag: str = "--init-image"):
    """A picture's RGB pixels (H, W, 3) uint8 (--init-image, --mask), or a UsageError naming the file."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    from wsd.cliargs import UsageError

    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (OSError, UnidentifiedImageError) as exc:
        raise UsageError(flag, path, f"not a readable image ({exc})") from None


def lora_setting(value: str) -> tuple[Path, float]:
    """`--lora FILE[:SCALE]` as (file, scale): the scale 0..2 as the page's slider offers (default 1)."""
    from wsd.cliargs import UsageError

    path, _, tail = value.rpartition(":")
    try:
        scale = float(tail) if path else 1.0
    except ValueError:
        path, scale = value, 1.0  # a colon in the file's name, no scale
    path = Path(path or value)
    if not (math.isfinite(scale) and 0 <= scale <= 2):
        raise UsageError("--lora", value, "the scale after ':' must be between 0 and 2")
    if not path.is_file():
        raise UsageError("--lora", value, f"{path}: no such file")
    return path, scale


def check_lora(dist: Path, model: str, path: Path) -> None:
    """The LoRA file against the build's LoRA table and weight shapes (wsd/lora.py, the rules the
    page's lib/lora.js applies), before a browser starts."""
    from wsd import lora
    from wsd.cliargs import UsageError

    folder = Path(dist) / model
    manifest = json.loads((folder / "manifest.json").read_text())
    cache = json.loads((folder / "tensor-cache.json").read_text())
    shapes = {r["name"]: tuple(r["shape"]) for shard in cache["records"] for r in shard["records"]}
    try:
        lora.check(manifest.get("lora"), path, shapes)
    except lora.LoraError as exc:
        raise UsageError("--lora", path, str(exc).removeprefix(f"{path}: ")) from None


def check_settings(dist: Path, model: str, settings: dict) -> None:
    """The page's own option checks (checkOptions in web/lib/pipeline.js: one copy of the rules)
    against the dist's manifest, run by node before any browser starts; a bad value is a
    UsageError naming the flag, the value and what the manifest accepts."""
    from wsd import pagejs
    from wsd.cliargs import UsageError

    path = Path(dist) / model / "manifest.json"
    if not path.is_file():
        built_model(dist, model)  # its one-line error: not built, and the command that builds it
    manifest = json.loads(path.read_text())
    if manifest.get("target") != "webgpu":
        raise UsageError(
            "--dist", Path(dist) / model, f"was built for {manifest.get('target')}; the page runs webgpu builds"
        )
    # JSON has no NaN or infinity: sent as text, which the page refuses as "not a number" too
    options = {
        k: (str(v) if isinstance(v, float) and not math.isfinite(v) else v)
        for k, v in page_options(settings, pixels=False).items()
    }
    size = manifest.get("image_size")
    for flag, key in (("initImage", "init_image"), ("maskImage", "mask")):
        shape = options.get(flag)
        if shape and (shape["width"], shape["height"]) != (size, size):
            why = (
                f"is {shape['width']}x{shape['height']}; {model} makes {size}x{size} images: resize or crop it to that"
            )
            raise UsageError(FLAGS[flag], settings[key], why)
    if settings.get("lora"):
        check_lora(dist, model, settings["lora"][0])
    try:
        pagejs.call("pipeline.js", "checkOptions", options, manifest, timeout_s=30)
    except pagejs.PageError as exc:
        field = exc.detail.get("field") or ""
        flag = FLAGS.get(field, field)
        why = str(exc).split(": ", 2)[-1]  # "WSD_INPUT: guidance: must be ..." -> "must be ..."
        # --negative: settings["negative"], --init-image: settings["init_image"], --mask: settings["mask"]
        raise UsageError(flag, settings.get(flag.lstrip("-").replace("-", "_")), why) from None


def generate(dist: Path, model: str, settings: dict, out: Path, timeout_s: float = 900, progress: bool = True) -> dict:
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright
    from tqdm import tqdm

    from wsd.host.browser import launch_options
    from wsd.host.server import app_mounts, serve
    from wsd.webrt import ensure_kit

    built_model(dist, model)
    bar = tqdm(total=100, desc=f"generate {model}", unit="%", disable=not progress, leave=True)

    def on_status(text, fraction):
        bar.set_postfix_str(text[:60], refresh=False)
        generating = text.split(":", 1)[0] in ("text", "denoise", "decode") or text.startswith("done")
        bar.n = round(100 * float(fraction or 0)) if generating else 0  # the bar is the generation's
        bar.refresh()

    with serve(app_mounts(ensure_kit().bundle, Path(dist))) as url, sync_playwright() as pw:
        try:
            browser = pw.chromium.launch(**launch_options())
        except PlaywrightError as exc:  # the first line says why; the rest is the driver's log
            raise WsdError(f"Chromium did not start: {str(exc).strip().splitlines()[0]}") from None
        try:
            page = browser.new_page()
            bar.set_postfix_str("loading the model (compiles GPU pipelines once)")
            open_app(page, url, model, timeout_s)
            last = run_generation(page, settings, timeout_s, on_status)
            png = canvas_png(page)
        finally:
            browser.close()
            bar.close()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(png)
    return {"out": str(out), **last}


def generate_on_dawn(dist: Path, model: str, settings: dict, out: Path, timeout_s: float = 900, host=None) -> dict:
    """The same generation (web/lib/pipeline.js) in Node over Dawn for Node: the real GPU on a
    server where headless Chromium has none (NVIDIA through Vulkan), SwiftShader elsewhere.
    `host`: a running DawnHost to use; its runner keeps the compiled pipelines of a model it
    already has open with the same .wasm (only the weights are swapped)."""
    from PIL import Image

    from wsd.host.dawn import DawnHost
    from wsd.host.modules import image_of
    from wsd.webrt import runtime_bundle

    folder = built_model(dist, model)
    options = page_options(settings)
    with contextlib.ExitStack() as stack:
        if host is None:
            host = stack.enter_context(DawnHost(runtime_bundle(), timeout_s=timeout_s))
        runner = host.shared_runner()
        opened = runner.call("open", {"url": host.mount(folder)}, timeout_s=timeout_s)
        path, scale = settings.get("lora") or (None, 1.0)  # a reused model may carry the last LoRA: set always
        data = base64.b64encode(Path(path).read_bytes()).decode() if path else None
        runner.call("setLora", {"data": data, "scale": scale, "name": Path(path).name if path else None})
        result = runner.call("generate", options, timeout_s=timeout_s)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image_of(result)).save(out)
    # total: what the Chromium path's figure covers too, the model's open and the generation
    timings = {**result["timings"], "open_ms": opened["timings"]["open_ms"]}
    timings["total_ms"] = timings["open_ms"] + timings["wall_ms"]
    return {
        "out": str(out),
        "width": result["width"],
        "height": result["height"],
        "tokens": result["tokens"],
        "timings": timings,
        "adapter": opened["adapter"],
    }
