"""The browser driver: real headless Chromium with WebGPU, and every way it can fail."""

from __future__ import annotations

import time

import pytest

from wsd.host import browser as wsd_browser
from wsd.host.browser import Browser, BrowserError, RunnerPage

pytestmark = pytest.mark.browser


def test_adapter_is_described(runner):
    info = runner.call("adapterInfo")
    assert info["vendor"] and info["architecture"]
    assert isinstance(info["features"], list)
    assert info["limits"]["maxBufferSize"] >= 256 << 20
    assert info["limits"]["maxStorageBufferBindingSize"] >= 128 << 20
    if wsd_browser.adapter_mode() == "swiftshader":
        assert info["architecture"] == "swiftshader"


def test_js_exception_is_an_error_naming_the_call(runner):
    with pytest.raises(BrowserError) as err:
        runner.call("testScenario", "throw")
    assert err.value.kind == "js-exception"
    assert "testScenario" in str(err.value) and "deliberate test exception" in str(err.value)


def test_a_hung_page_times_out_instead_of_hanging(runner):
    t0 = time.monotonic()
    with pytest.raises(BrowserError) as err:
        runner.call("testScenario", "hang", timeout_s=3)
    assert err.value.kind == "timeout" and "within 3s" in str(err.value)
    assert time.monotonic() - t0 < 30


def test_a_crashed_page_is_reported_as_a_crash(page, runner):
    try:
        page.goto("chrome://crash", timeout=10_000)
    except Exception:  # noqa: BLE001 (the navigation itself fails as the renderer dies)
        pass
    with pytest.raises(BrowserError) as err:
        runner.call("adapterInfo", timeout_s=10)
    assert err.value.kind == "crash"


def test_a_missing_artifact_is_a_fetch_error(runner):
    with pytest.raises(BrowserError) as err:
        runner.call("runModule", {"wasm": "/a/missing.wasm", "entry": "main", "inputs": []})
    assert err.value.kind == "fetch" and "404" in str(err.value)


def test_a_browser_without_navigator_gpu(page, runner_url):
    page.add_init_script("delete Navigator.prototype.gpu;")
    runner = RunnerPage(page, runner_url[0], timeout_s=30).open()
    with pytest.raises(BrowserError) as err:
        runner.call("adapterInfo")
    assert err.value.kind == "no-webgpu"
    assert "--enable-unsafe-webgpu" in str(err.value)  # the message says how to get WebGPU


def test_a_browser_with_webgpu_disabled(kit, playwright):
    with Browser(kit.bundle, webgpu=False, timeout_s=30, playwright=playwright) as browser:
        with pytest.raises(BrowserError) as err:
            browser.runner().call("adapterInfo")
    assert err.value.kind in ("no-adapter", "no-webgpu")


def test_no_chromium_is_a_clear_error(monkeypatch, kit, playwright):
    monkeypatch.setenv("WSD_CHROMIUM", "/nonexistent/chromium")
    with pytest.raises(BrowserError) as err:
        with Browser(kit.bundle, playwright=playwright):
            pass
    assert err.value.kind == "no-browser"
    assert "apt-get install" in str(err.value) and "WSD_CHROMIUM" in str(err.value)


def test_launch_args_choose_the_adapter(monkeypatch):
    monkeypatch.setenv("WSD_WEBGPU_ADAPTER", "swiftshader")
    assert "--use-webgpu-adapter=swiftshader" in wsd_browser.launch_args()
    monkeypatch.setenv("WSD_WEBGPU_ADAPTER", "gpu")
    args = wsd_browser.launch_args()
    assert "--enable-unsafe-webgpu" in args and "--use-webgpu-adapter=swiftshader" not in args
    assert "--disable-background-networking" in wsd_browser.launch_args(webgpu=False)
