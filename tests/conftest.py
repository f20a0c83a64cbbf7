"""Shared fixtures: the runtime kit, the browser (through pytest-playwright), the native probe."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # test helpers (serial_ref)

from wsd.host import browser as wsd_browser  # noqa: E402

pytest_plugins = ["scheduling"]  # xdist order (tests/scheduling.py); the gate's plugin runs in its own processes
from wsd.host.server import serve  # noqa: E402


@pytest.fixture(scope="session")
def kit():
    """The cached tvmjs runtime kit (built on first use: minutes; then reused)."""
    from wsd.webrt import ensure_kit

    return ensure_kit()


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    """pytest-playwright launches Debian's chromium with WebGPU instead of a downloaded browser."""
    return {**browser_type_launch_args, **wsd_browser.launch_options()}


@pytest.fixture(scope="session")
def runner_url(kit, tmp_path_factory):
    artifacts = tmp_path_factory.mktemp("artifacts")
    with serve(wsd_browser.runner_mounts(kit.bundle, artifacts)) as url:
        yield url, artifacts


@pytest.fixture
def runner(page, runner_url):
    """The runner page open in pytest-playwright's page, with test scenarios enabled."""
    url, _ = runner_url
    return wsd_browser.RunnerPage(page, url, timeout_s=60, test_hooks=True).open()


@pytest.fixture(scope="session")
def tiny_spec():
    from wsd import models

    return models.get("sd15-tiny")


@pytest.fixture(scope="session")
def tiny_folder(tiny_spec):
    """The seeded random sd15-tiny diffusers folder (cached across runs)."""
    from wsd.build import random_folder

    return random_folder(tiny_spec, 0, echo=lambda *_: None)


@pytest.fixture(scope="session")
def tiny_model(tiny_spec, tiny_folder):
    from wsd.models.folder import load

    return load(tiny_spec, tiny_folder)
