"""`wsd toolchain`: finds the parts, installs only where it may, and says what to install."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from wsd import toolchain
from wsd.cli import main
from wsd.errors import ToolchainError


def test_every_part_is_found_here():
    found = toolchain.ensure(install=False, echo=lambda _: None)
    assert all(f.path for f in found)
    assert all(f.version for f in found)


@pytest.mark.parametrize("variable,part", [("WSD_CHROMIUM", "chromium"), ("WSD_EMCC", "emscripten")])
def test_a_missing_part_names_the_install_command(monkeypatch, variable, part):
    monkeypatch.setenv(variable, "/nonexistent/tool")
    with pytest.raises(ToolchainError) as err:
        toolchain.ensure(install=False, echo=lambda _: None)
    message = str(err.value)
    assert part in message and "apt-get install" in message
    with pytest.raises(ToolchainError, match="apt-get install"):
        toolchain.find(part)


def test_without_root_it_never_installs(monkeypatch):
    monkeypatch.setenv("WSD_EMCC", "/nonexistent/emcc")
    monkeypatch.setattr(toolchain.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(toolchain, "_apt_install", lambda pkgs: pytest.fail("must not install without root"))
    with pytest.raises(ToolchainError, match="emscripten"):
        toolchain.ensure(install=True, echo=lambda _: None)


def test_as_root_it_installs_what_is_missing(monkeypatch):
    calls = []
    monkeypatch.setattr(toolchain, "can_install", lambda: True)
    monkeypatch.setattr(toolchain, "_apt_install", calls.append)
    monkeypatch.setenv("WSD_EMCC", "/nonexistent/emcc")
    with pytest.raises(ToolchainError):  # the fake install did not make emcc appear
        toolchain.ensure(install=True, echo=lambda _: None)
    assert calls == [["emscripten"]]


def test_cli_exit_codes(monkeypatch, capsys):
    assert main(["toolchain", "--no-install"]) == 0
    out = capsys.readouterr().out
    assert "chromium" in out and "emscripten" in out
    assert main(["toolchain"]) == 0  # everything present: nothing to install, npm packages cached
    assert "tvmjs npm" in capsys.readouterr().out
    monkeypatch.setenv("WSD_CHROMIUM", "/nonexistent/chromium")
    assert main(["toolchain", "--no-install"]) == 2
    assert "apt-get install" in capsys.readouterr().err


def test_prefetch_runs_detached_and_logs_each_part(monkeypatch, tmp_path):
    """The real launch: a process in its own session that outlives the call and logs each part
    (Dawn here, pointed at a carried copy so nothing is installed)."""
    from wsd import prefetch

    monkeypatch.setenv("WSD_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("WSD_DAWN_MODULES", str(tmp_path / "node_modules"))
    log = prefetch.start(("dawn",))
    deadline = time.monotonic() + 60
    while "[prefetch dawn] ready" not in (log.read_text() if log.exists() else ""):
        assert time.monotonic() < deadline, log.read_text() if log.exists() else "no log"
        time.sleep(0.2)


def test_prefetch_warms_parts_at_once_and_reports_a_failure(monkeypatch, capsys):
    from wsd import prefetch

    started = threading.Barrier(2, timeout=10)  # both parts must be under way together

    def ok(echo):
        started.wait()

    def broken(echo):
        started.wait()
        raise RuntimeError("no registry")

    monkeypatch.setattr(prefetch, "PARTS", {"dawn": ok, "kit": broken})
    assert prefetch.main([]) == 1
    out = capsys.readouterr().out
    assert "[prefetch dawn] ready" in out and "[prefetch kit] failed: no registry" in out


def test_toolchain_prefetch_starts_the_background_builds(monkeypatch, capsys):
    from wsd import prefetch

    calls = []
    monkeypatch.setattr(prefetch, "start", lambda parts=(): calls.append(parts) or Path("/x/prefetch.log"))
    assert main(["toolchain", "--no-install", "--prefetch"]) == 0
    assert calls == [()] and "in the background (log: /x/prefetch.log)" in capsys.readouterr().out


def test_playwrights_own_chromium_is_used_where_the_system_has_none(monkeypatch, tmp_path):
    """Without root there is no apt: `playwright install chromium` puts one under
    ~/.cache/ms-playwright, and wsd finds it there (here a link to this machine's chromium)."""
    import shutil

    from wsd import toolchain

    system = shutil.which("chromium")
    browsers = tmp_path / "ms-playwright"
    (browsers / "chromium-1200" / "chrome-linux").mkdir(parents=True)
    (browsers / "chromium-1200" / "chrome-linux" / "chrome").symlink_to(system)
    monkeypatch.setenv("PLAYWRIGHT_BROWSERS_PATH", str(browsers))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.delenv("WSD_CHROMIUM", raising=False)
    assert toolchain.find("chromium") == str(browsers / "chromium-1200" / "chrome-linux" / "chrome")
    from wsd.host.browser import launch_options

    assert launch_options()["executable_path"].endswith("chrome-linux/chrome")
    (browsers / "chromium-1200" / "chrome-linux" / "chrome").unlink()
    with pytest.raises(toolchain.ToolchainError, match="without root: python -m playwright install chromium"):
        toolchain.find("chromium")
