"""Driving Debian's headless Chromium with WebGPU through Playwright.

Every failure becomes a BrowserError whose `kind` names what failed (no browser, no
WebGPU, a crash, a timeout, a JS exception, a shader rejected by the GPU), never a
pass and never a hang: each call into the page has a deadline enforced from Python,
so even a page whose main thread is stuck times out.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from wsd import toolchain
from wsd.errors import ToolchainError, WsdError
from wsd.paths import web_dir

# Keep Chromium off the network (this machine has none but the registries) and quiet.
BASE_ARGS = [
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--disable-default-apps",
    "--no-default-browser-check",
]
WEBGPU_ARGS = ["--enable-unsafe-webgpu", "--enable-features=Vulkan"]
SWIFTSHADER_ARGS = ["--enable-unsafe-swiftshader", "--use-webgpu-adapter=swiftshader"]
NO_WEBGPU_ARGS = ["--disable-webgpu", "--disable-features=WebGPU"]
# Page-side error codes (web/runner/runner.js) -> BrowserError kinds.
PAGE_CODES = {
    "WSD_NO_WEBGPU": "no-webgpu",
    "WSD_NO_ADAPTER": "no-adapter",
    "WSD_LIMIT": "limit",
    "WSD_NO_F16": "no-f16",
    "WSD_SHADER": "shader",
    "WSD_GPU_ERROR": "gpu-error",
    "WSD_FETCH": "fetch",
    "WSD_INTEGRITY": "integrity",
    "WSD_TOKENIZER": "tokenizer",
    "WSD_MODEL": "model",
    "WSD_INPUT": "input",
}


class BrowserError(WsdError):
    def __init__(self, kind: str, message: str):
        super().__init__(f"[{kind}] {message}")
        self.kind = kind


def adapter_mode() -> str:
    """'gpu' where a real GPU is present (or WSD_WEBGPU_ADAPTER=gpu), else 'swiftshader'."""
    mode = os.environ.get("WSD_WEBGPU_ADAPTER", "auto")
    if mode in ("gpu", "swiftshader"):
        return mode
    return "gpu" if Path("/dev/nvidia0").exists() else "swiftshader"


def launch_args(webgpu: bool = True, adapter: str | None = None) -> list[str]:
    args = list(BASE_ARGS)
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        args.append("--no-sandbox")  # Chromium refuses to sandbox as root
    if not webgpu:
        return args + NO_WEBGPU_ARGS
    args += WEBGPU_ARGS
    if (adapter or adapter_mode()) == "swiftshader":
        args += SWIFTSHADER_ARGS
    return args


def launch_options(webgpu: bool = True, adapter: str | None = None) -> dict:
    """Keyword arguments for Playwright's chromium.launch (also pytest-playwright's fixture)."""
    try:
        executable = toolchain.find("chromium")
    except ToolchainError as exc:
        raise BrowserError("no-browser", str(exc)) from exc
    return {"executable_path": executable, "args": launch_args(webgpu, adapter), "headless": True}


def runner_mounts(bundle: Path, artifacts: Path | None = None) -> dict[str, Path]:
    mounts = {"/": web_dir() / "runner", "/lib/": web_dir() / "lib", "/tvmjs.bundle.js": bundle}
    if artifacts is not None:
        mounts["/a/"] = artifacts
    return mounts


@dataclass
class RunnerPage:
    """The runner page (web/runner) open in a Playwright page, with deadline-bound calls."""

    page: object
    base_url: str
    timeout_s: float = 120.0
    test_hooks: bool = False
    page_errors: list[str] = field(default_factory=list)
    crashed: bool = False

    def open(self) -> RunnerPage:
        self.page.on("crash", lambda *_: setattr(self, "crashed", True))
        self.page.on("pageerror", lambda exc: self.page_errors.append(str(exc)))
        try:
            self.page.goto(
                f"{self.base_url}/index.html" + ("?test=1" if self.test_hooks else ""), timeout=self.timeout_s * 1000
            )
            self.page.wait_for_function("window.wsd && window.wsd.ready", timeout=self.timeout_s * 1000)
        except Exception as exc:  # noqa: BLE001 (Playwright raises several types)
            raise self._classify("opening the runner page", exc) from exc
        return self

    def call(self, method: str, arg=None, timeout_s: float | None = None):
        """Run `await wsd[method](arg)` in the page; a deadline applies even to a hung page."""
        what = f"wsd.{method}"
        deadline_ms = (timeout_s or self.timeout_s) * 1000
        start = """([m, a]) => {
            window.__wsdJob = {done: false};
            // A macrotask, so this evaluate returns before the work starts even if the
            // work never yields the main thread again.
            new Promise((go) => setTimeout(go, 0)).then(() => window.wsd[m](a)).then(
                (r) => { window.__wsdJob = {done: true, result: r}; },
                (e) => { window.__wsdJob = {done: true, error: String((e && e.message) || e)}; });
        }"""
        try:
            self.page.evaluate(start, [method, arg])
            self.page.wait_for_function("window.__wsdJob && window.__wsdJob.done", timeout=deadline_ms, polling=50)
            job = self.page.evaluate("window.__wsdJob")
        except Exception as exc:  # noqa: BLE001
            raise self._classify(what, exc, deadline_ms / 1000) from exc
        if "error" in job:
            raise self._page_error(what, job["error"])
        return job["result"]

    def _page_error(self, what: str, message: str) -> BrowserError:
        code = message.split(":", 1)[0]
        kind = PAGE_CODES.get(code, "js-exception")
        return BrowserError(kind, f"{what} failed in the page: {message}")

    def _classify(self, what: str, exc: Exception, deadline_s: float | None = None) -> BrowserError:
        text = str(exc)
        if self.crashed or "crash" in text.lower():
            return BrowserError("crash", f"the page crashed during {what}")
        if type(exc).__name__ == "TimeoutError" or "Timeout" in text:
            return BrowserError("timeout", f"{what} did not finish within {deadline_s or self.timeout_s:.0f}s")
        if "Target" in text and "closed" in text:
            return BrowserError("crash", f"the browser or page closed during {what}")
        extra = f" (page errors: {'; '.join(self.page_errors)})" if self.page_errors else ""
        return BrowserError("js-exception", f"{what}: {text.splitlines()[0] if text else type(exc).__name__}{extra}")


class Browser:
    """Launch Chromium, serve the runner page, and hand out RunnerPage sessions.

    with Browser(kit.bundle, artifacts_dir) as browser:
        info = browser.runner().call("adapterInfo")
    """

    def __init__(
        self,
        bundle: Path,
        artifacts: Path | None = None,
        webgpu: bool = True,
        timeout_s: float = 120.0,
        adapter: str | None = None,
        playwright=None,
    ):
        self.mounts = runner_mounts(bundle, artifacts)
        self.webgpu, self.timeout_s, self.adapter = webgpu, timeout_s, adapter
        # An already running Playwright (pytest-playwright's fixture) is borrowed, not stopped.
        self._borrowed = playwright

    def __enter__(self) -> Browser:
        from playwright.sync_api import sync_playwright

        from wsd.host.server import serve

        options = launch_options(self.webgpu, self.adapter)
        self._serve = serve(self.mounts)
        self.base_url = self._serve.__enter__()
        self._pw = self._borrowed or sync_playwright().start()
        try:
            self._browser = self._pw.chromium.launch(**options)
        except Exception as exc:  # noqa: BLE001
            self.__exit__(None, None, None)
            raise BrowserError("launch", f"could not start {options['executable_path']}: {exc}") from exc
        return self

    def runner(self, test_hooks: bool = False) -> RunnerPage:
        return RunnerPage(self._browser.new_page(), self.base_url, self.timeout_s, test_hooks).open()

    def mount(self, folder: Path) -> str:
        """Serve another built model folder; returns its URL path (the server reads mounts live)."""
        prefix = f"/m{len(self.mounts)}/"
        self.mounts[prefix] = Path(folder)
        return prefix

    def shared_runner(self) -> RunnerPage:
        """One runner page kept open across callers, so a loaded model stays loaded."""
        if getattr(self, "_shared", None) is None:
            self._shared = self.runner()
        return self._shared

    def reset_runner(self) -> None:
        """Close the shared page (after a crash or a timeout); the next call opens a fresh one."""
        shared, self._shared = getattr(self, "_shared", None), None
        if shared is not None:
            try:
                shared.page.close()
            except Exception:  # noqa: BLE001,S110  # nosec B110 (the page may be gone already)
                pass

    def __exit__(self, *exc) -> None:
        stop_playwright = (lambda: None) if self._borrowed else (lambda: self._pw.stop())
        for closer in (lambda: self._browser.close(), stop_playwright, lambda: self._serve.__exit__(None, None, None)):
            try:
                closer()
            # Best-effort teardown: the browser may already be gone.
            except Exception:  # noqa: BLE001,S110  # nosec B110
                pass
