"""The candidates a case runs on: each backend's build (made, or given with --built) and the
process that runs it (headless Chromium, Dawn for Node, the native module), opened once.

The webgpu (Chromium) and dawn (Dawn for Node) backends run one webgpu build; native runs the
llvm build of the same model, the localizer's trusted side.
"""

from __future__ import annotations

import time
from pathlib import Path

BACKENDS = ("webgpu", "native", "dawn")
DEFAULT_BACKENDS = ("webgpu", "native")
# The build each backend runs: webgpu (headless Chromium) and dawn (Dawn for Node) share one.
TARGETS = {"webgpu": "webgpu", "dawn": "webgpu", "native": "llvm"}
GPU_BACKENDS = ("webgpu", "dawn")


class Candidates:
    """Builds and opened backends of one model. `build_options(target)` says how to build it;
    `timings` (shared with the harness) gains build_s and browser_open_s."""

    def __init__(self, model: str, build_options, dists: dict, out_dir: Path, timings: dict, **host):
        self.model = model
        self.build_options = build_options
        self.dists = dists  # backend -> built model folder
        self.out_dir = out_dir
        self.timings = timings
        self.timeout_s: float = host.get("timeout_s", 600.0)
        self.echo = host.get("echo", print)
        self.playwright = host.get("playwright")
        self.browser = host.get("browser")  # a running wsd.host.browser.Browser (shared), or None
        self.profile: bool = host.get("profile", False)  # GPU pages opened with per-kernel timing (--perf)
        self.gemm_path: str = host.get("gemm_path", "auto")  # --gemm-path: which GEMM kernels the page runs
        self._own_browser = self.browser is None
        self._dawn = None  # a wsd.host.dawn.DawnHost, started for the dawn backend
        self._checked: set[str] = set()
        self._opened: dict[str, object] = {}
        self.adapter: dict = {}  # the last GPU adapter opened (the summary's headline)
        self.adapters: dict[str, dict] = {}  # backend -> its adapter
        self.open_timings: dict = {}

    def dist(self, backend: str) -> Path:
        twin = next((b for b, t in TARGETS.items() if b != backend and t == TARGETS[backend] and b in self.dists), None)
        if backend not in self.dists and twin:
            self.dists[backend] = self.dists[twin]  # one webgpu build for Chromium and Dawn
        if backend not in self.dists:
            from wsd.build import build

            t0 = time.perf_counter()
            target = TARGETS[backend]
            out = self.out_dir.parent / ".dist" / target
            self.echo(f"[conformance] building {self.model} for {target} (cached after the first run)")
            result = build(self.build_options(target), out, echo=self.echo, progress=False)
            self.dists[backend] = result.out
            self.timings["build_s"] += time.perf_counter() - t0
        elif backend not in self._checked:
            from wsd.manifest import require_whole

            require_whole(Path(self.dists[backend]))  # a damaged dist is an error, not a failing stage
        self._checked.add(backend)
        return Path(self.dists[backend])

    def backend(self, name: str):
        if name not in self._opened:
            if name == "native":
                from conformance.backends import NativeBackend

                self._opened[name] = NativeBackend(self.dist("native"))
            else:
                self._opened[name] = self._open_gpu(name)
        return self._opened[name]

    def use(self, name: str, backend) -> None:
        """Run `name`'s cases on an already open backend (a self-test shares its baseline's native)."""
        self._opened[name] = backend

    def is_open(self, name: str) -> bool:
        return name in self._opened

    def _host(self, name: str):
        """The headless Chromium (webgpu) or the Dawn for Node runner (dawn) that runs the page code."""
        from wsd.webrt import runtime_bundle

        if name == "dawn":
            if self._dawn is None:
                from wsd.host.dawn import DawnHost

                self._dawn = DawnHost(runtime_bundle(echo=self.echo), timeout_s=self.timeout_s).__enter__()
            return self._dawn
        if self.browser is None:
            from wsd.host.browser import Browser

            bundle = runtime_bundle(echo=self.echo)
            self.browser = Browser(bundle, timeout_s=self.timeout_s, playwright=self.playwright).__enter__()
        return self.browser

    def _open_gpu(self, name: str):
        from conformance.backends import WebGPUBackend

        dist = self.dist(name)
        t0 = time.perf_counter()
        host = self._host(name)
        where = "Dawn for Node" if name == "dawn" else "headless Chromium"
        self.echo(f"[conformance] opening {self.model} in {where} (compiles every GPU pipeline once)")
        runner = host.shared_runner()
        backend = WebGPUBackend(
            runner, host.mount(dist), dist, timeout_s=self.timeout_s, profile=self.profile, gemm_path=self.gemm_path
        )
        backend.name = name
        self.adapter = self.adapters[name] = backend.adapter
        self.timings["browser_open_s"] += time.perf_counter() - t0
        self.open_timings = backend.open_timings
        return backend

    def drop(self, name: str) -> None:
        """After a crash or a timeout the page cannot be trusted: the next case reopens it."""
        self._opened.pop(name, None)
        if name == "webgpu" and self.browser is not None:
            self.browser.reset_runner()
        if name == "dawn" and self._dawn is not None:
            self._dawn.reset_runner()

    def close(self) -> None:
        if self.browser is not None and self._own_browser:
            self.browser.__exit__(None, None, None)
        if self._dawn is not None:
            self._dawn.__exit__(None, None, None)
        self.browser = self._dawn = None
        self._opened.clear()
