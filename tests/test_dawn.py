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
