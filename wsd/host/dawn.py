"""The runner without a browser: Dawn for Node (npm `webgpu`) running web/lib/remote.js.

Chrome's WebGPU is Dawn; in Node it reaches a real GPU where headless Chromium has none
(an NVIDIA server: Dawn over the Vulkan driver) and SwiftShader elsewhere. The calls are
the runner page's (`call("open", {...})`, `call("run", ...)`), so the harness's WebGPU
backend and `wsd generate` drive either one. Every call has a deadline enforced from
Python; a runner that dies or hangs is a BrowserError of kind "crash" or "timeout".
"""

from __future__ import annotations

import json
import os
import queue
import subprocess  # nosec B404
import threading
from collections import deque
from pathlib import Path

from wsd import toolchain
from wsd.host.browser import PAGE_CODES, BrowserError
from wsd.paths import web_dir

SCRIPT = "tools/dawn_runner.mjs"
REPLY = "\x1eWSD "
# Dawn options for real GPUs: fp16 on NVIDIA's Vulkan driver is withheld without the toggle;
# unquantized timestamps for per-kernel timing.
DEFAULT_FLAGS = (
    "enable-dawn-features=allow_unsafe_apis,vulkan_enable_f16_on_nvidia",
    "disable-dawn-features=timestamp_quantization",
)


class DawnRunner:
    """One Node process; `call` sends a request line and waits for its reply line."""

    def __init__(self, bundle: Path, timeout_s: float, flags: tuple[str, ...] = DEFAULT_FLAGS):
        from wsd.wgsl import dawn_modules, vulkan_env

        env = vulkan_env()
        env["WSD_DAWN_MODULES"] = str(dawn_modules(echo=lambda *_: None))
        env["WSD_DAWN_FLAGS"] = ";".join(flags)
        self.timeout_s = timeout_s
        self.stderr: deque[str] = deque(maxlen=40)
        self._replies: queue.Queue = queue.Queue()
        self._next = 0
        self.proc = subprocess.Popen(  # nosec B603 (an argv list, never a shell)
            [toolchain.find("node"), str(web_dir() / SCRIPT), str(bundle)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=str(web_dir()),
        )
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()

    def _read_stdout(self) -> None:
        for line in self.proc.stdout:
            if line.startswith(REPLY):
                self._replies.put(json.loads(line[len(REPLY) :]))
        self._replies.put(None)  # the process ended

    def _read_stderr(self) -> None:
        for line in self.proc.stderr:
            self.stderr.append(line.rstrip())

    def call(self, method: str, arg=None, timeout_s: float | None = None):
        what = f"wsd.{method} (Dawn for Node)"
        self._next += 1
        request = {"id": self._next, "method": method, "arg": arg}
        try:
            self.proc.stdin.write(json.dumps(request) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise BrowserError("crash", f"the Dawn runner is gone before {what}: {self._tail()}") from None
        deadline = timeout_s or self.timeout_s
        while True:
            try:
                reply = self._replies.get(timeout=deadline)
            except queue.Empty:
                self.close()
                raise BrowserError("timeout", f"{what} did not finish within {deadline:.0f}s") from None
            if reply is None:
                raise BrowserError("crash", f"the Dawn runner exited during {what}: {self._tail()}")
            if reply.get("id") == self._next:
                break
        if "error" in reply:
            message = reply["error"]
            kind = PAGE_CODES.get(message.split(":", 1)[0], "js-exception")
            raise BrowserError(kind, f"{what} failed: {message}")
        return reply["result"]

    def _tail(self) -> str:
        return " | ".join(list(self.stderr)[-8:]) or "(no output)"

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)


class DawnHost:
    """Serves model folders over HTTP and runs one DawnRunner; the Browser class's interface.

    with DawnHost(kit.bundle) as host:
        info = host.shared_runner().call("adapterInfo")
    """

    def __init__(self, bundle: Path, timeout_s: float = 120.0, flags: tuple[str, ...] | None = None):
        self.bundle, self.timeout_s = Path(bundle), timeout_s
        env_flags = os.environ.get("WSD_DAWN_FLAGS")
        self.flags = tuple(flags) if flags is not None else tuple(env_flags.split(";")) if env_flags else DEFAULT_FLAGS
        self.mounts: dict[str, Path] = {}
        self._shared: DawnRunner | None = None

    def __enter__(self) -> DawnHost:
        from wsd.host.server import serve

        self._serve = serve(self.mounts)
        self.base_url = self._serve.__enter__()
        return self

    def mount(self, folder: Path) -> str:
        """Serve a built model folder; returns its full URL (Node has no page origin)."""
        prefix = f"/m{len(self.mounts)}/"
        self.mounts[prefix] = Path(folder)
        return self.base_url + prefix

    def shared_runner(self) -> DawnRunner:
        if self._shared is None:
            self._shared = DawnRunner(self.bundle, self.timeout_s, self.flags)
        return self._shared

    def reset_runner(self) -> None:
        shared, self._shared = self._shared, None
        if shared is not None:
            shared.close()

    def __exit__(self, *exc) -> None:
        self.reset_runner()
        self._serve.__exit__(None, None, None)
