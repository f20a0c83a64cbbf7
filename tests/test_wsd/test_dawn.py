"""The Dawn for Node runner: lib/remote.js without a browser (SwiftShader here, a GPU on a GPU machine)."""

from __future__ import annotations

import time

import pytest

from wsd.host.browser import BrowserError
from wsd.host.dawn import DawnHost, DawnRunner

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def host(kit):
    with DawnHost(kit.bundle, timeout_s=120) as h:
        yield h


def test_the_adapter_is_described(host):
    info = host.shared_runner().call("adapterInfo")
    assert info["vendor"] and info["limits"]["maxStorageBufferBindingSize"] >= 128 << 20
    assert isinstance(info["features"], list)


def test_an_unknown_method_is_an_input_error_and_the_runner_lives_on(host):
    runner = host.shared_runner()
    with pytest.raises(BrowserError) as err:
        runner.call("noSuchMethod")
    assert err.value.kind == "input" and "noSuchMethod" in str(err.value)
    assert runner.call("adapterInfo")["vendor"]


def test_no_model_open_is_a_model_error(host):
    with pytest.raises(BrowserError) as err:
        host.shared_runner().call("memory")
    assert err.value.kind == "model" and "no model is open" in str(err.value)


def test_a_missing_model_is_a_fetch_error(host, tmp_path):
    with pytest.raises(BrowserError) as err:
        host.shared_runner().call("open", {"url": host.mount(tmp_path)})
    assert err.value.kind == "fetch" and "manifest.json" in str(err.value)


def test_a_runner_that_dies_is_a_crash_and_a_slow_one_a_timeout(kit):
    runner = DawnRunner(kit.bundle, timeout_s=60)
    try:
        runner.proc.kill()
        runner.proc.wait()
        with pytest.raises(BrowserError) as err:
            runner.call("adapterInfo")
        assert err.value.kind == "crash"
    finally:
        runner.close()
    slow = DawnRunner(kit.bundle, timeout_s=60)
    t0 = time.monotonic()
    with pytest.raises(BrowserError) as err:
        slow.call("adapterInfo", timeout_s=0.001)  # Dawn's start alone takes longer
    assert err.value.kind == "timeout" and time.monotonic() - t0 < 30
    assert slow.proc.poll() is not None  # a timed-out runner is not left running


@pytest.fixture(scope="module")
def tiny_dist(tmp_path_factory):
    """The sd15-tiny webgpu build (cached) that both Dawn model tests open in the module's runner."""
    from wsd.build import BuildOptions, build

    out = tmp_path_factory.mktemp("dist")
    build(BuildOptions("sd15-tiny", random_init=True), out, echo=lambda *_: None, progress=False)
    return out


@pytest.mark.e2e
def test_a_model_runs_and_each_kernel_is_timed(host, tiny_dist):
    """What bench_gpu.py does on a GPU machine, on the tiny model: open with the profiler (here
    with the weights after the pipelines, its --open-sequential), the page's split of the open,
    time the UNet, and get one GPU time per dispatch, named by kernel."""
    import json

    import numpy as np

    from wsd.host.modules import encode, open_phases

    dist = tiny_dist / "sd15-tiny"
    runner = host.shared_runner()
    opened = runner.call("open", {"url": host.mount(dist), "profile": True, "overlap": False}, timeout_s=600)
    assert opened["model"] == "sd15-tiny"
    phases = open_phases(opened)
    assert {"fetch_ms", "instantiate_ms", "swap_ms", "pipelines_ms", "params_ms", "open_ms"} <= set(phases)
    assert opened["timings"]["overlap"] is False  # so the two phases follow each other
    assert phases["pipelines_ms"] + phases["params_ms"] <= phases["open_ms"], phases
    spec = json.loads((dist / "manifest.json").read_text())["entry_points"]["unet"]["inputs"]
    rng = np.random.default_rng(0)
    inputs = [rng.standard_normal(t["shape"]).astype(t["dtype"]) for t in spec]
    result = runner.call("bench", {"entry": "unet", "inputs": [encode(x) for x in inputs], "repeat": 2}, timeout_s=600)
    assert len(result["ms"]) == 2 and all(ms > 0 for ms in result["ms"])
    assert len(result["record_ms"]) == 2 and all(
        0 < r <= ms for r, ms in zip(result["record_ms"], result["ms"], strict=True)
    )
    if "timestamp-query" not in opened["adapter"]["features"]:
        pytest.skip("this adapter has no timestamp-query: no per-kernel times")  # never the case on SwiftShader
    kernels = json.loads((dist / "kernels.json").read_text())
    named = [k for k in result["kernels"] if k["kernel"] in kernels]
    # A kernel TVM launches in several parts names its shaders after the fused block, not after
    # the kernel (the tiny UNet's attention softmax): those few do not join kernels.json.
    assert len(result["kernels"]) > 50 and len(named) >= 0.98 * len(result["kernels"]), sorted(
        {k["kernel"] for k in result["kernels"]} - set(kernels)
    )
    assert all(k["ms"] >= 0 for k in named) and sum(k["ms"] for k in named) > 0


@pytest.mark.e2e
def test_generate_over_dawn_equals_diffusers(host, tiny_dist, tmp_path, tiny_folder):
    """`wsd generate --backend dawn`'s path: the page's pipeline in Node over Dawn (a GPU
    server's), the PNG it writes equal to diffusers' own pipeline on the same folder. In the
    module's runner: after the test above, the open keeps its compiled pipelines (one SwiftShader
    compile of ~45 s for both tests)."""
    import json

    import diffusers_ref
    import numpy as np
    from PIL import Image

    from conformance.metrics import compare
    from wsd.app import generate_on_dawn

    settings = {"prompt": "a red cube on a table", "negative": "blurry", "steps": 4, "seed": 3, "guidance": 7.5}
    out = tmp_path / "cube.png"
    result = generate_on_dawn(tiny_dist, "sd15-tiny", settings, out, timeout_s=600, host=host)
    assert result["out"] == str(out) and len(result["timings"]["steps_ms"]) == 4 and result["adapter"]["vendor"]
    got = np.asarray(Image.open(out).convert("RGB")).astype(np.float64)
    manifest = json.loads((tiny_dist / "sd15-tiny" / "manifest.json").read_text())
    want = diffusers_ref.image(tiny_folder, manifest, {**settings, "scheduler": manifest["default_scheduler"]})
    assert got.shape == (64, 64, 3) and got.std() > 5
    assert compare(want, got)["psnr"] >= 40.0


@pytest.mark.e2e
def test_steps_recorded_while_the_gpu_runs_the_last_give_the_same_image(host, tiny_dist):
    """The page's loop submits a step and waits only for the one before it (web/lib/pipeline.js
    stepSubmitted): the image is the one the loop that waits for every step makes, byte for byte."""
    runner = host.shared_runner()
    runner.call("open", {"url": host.mount(tiny_dist / "sd15-tiny")}, timeout_s=600)
    runner.call("setLora", {"data": None, "scale": 1.0, "name": None})  # the shared model may carry one
    settings = {"prompt": "a red cube", "steps": 4, "seed": 4, "guidance": 7.5}
    overlapped = runner.call("generate", settings, timeout_s=600)
    synced = runner.call("generate", {**settings, "syncEachStep": True}, timeout_s=600)
    assert len(overlapped["timings"]["steps_ms"]) == 4
    assert overlapped["rgba"] == synced["rgba"] and overlapped["latents"] == synced["latents"]


@pytest.mark.e2e
def test_generate_over_dawn_takes_a_lora_and_lets_it_go(host, tiny_dist, tmp_path, tiny_folder):
    """`wsd generate --backend dawn --lora FILE:SCALE`: the LoRA changes the image, and the next
    generation without it (the runner keeps the model open) is the build's own again, exactly. The
    merge's numbers are the gate's lora case (against diffusers' fuse_lora)."""
    import numpy as np
    from PIL import Image

    from conformance.metrics import compare
    from conformance.reference.lora import make_lora
    from wsd.app import generate_on_dawn

    settings = {"prompt": "a red cube on a table", "negative": "", "steps": 2, "seed": 5, "guidance": 7.5}
    lora = make_lora(tiny_folder, tmp_path / "lora", seed=1)
    images = []
    for name, extra in (("own", {}), ("lora", {"lora": (lora, 0.8)}), ("again", {})):
        out = tmp_path / f"{name}.png"
        generate_on_dawn(tiny_dist, "sd15-tiny", {**settings, **extra}, out, timeout_s=600, host=host)
        images.append(np.asarray(Image.open(out).convert("RGB")).astype(np.float64))
    own, with_lora, again = images
    np.testing.assert_array_equal(again, own)
    assert compare(own, with_lora)["psnr"] < 30.0
