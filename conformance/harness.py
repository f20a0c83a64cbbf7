"""Runs stage cases on backends and turns each into a result row of summary.json.

One Harness per session: the reference of a case is computed once and shared by the
backends; the browser opens the model once; a case that fails on WebGPU only is
localized kernel by kernel against the native build.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from conformance import golden as golden_mod
from conformance import tolerances as tol_mod
from conformance.metrics import measure
from conformance.stages import STAGES, Case, cases, entry_args
from wsd.paths import repo_root

BACKENDS = ("webgpu", "native", "dawn")
DEFAULT_BACKENDS = ("webgpu", "native")
# The build each backend runs: webgpu (headless Chromium) and dawn (Dawn for Node) share one.
TARGETS = {"webgpu": "webgpu", "dawn": "webgpu", "native": "llvm"}
GPU_BACKENDS = ("webgpu", "dawn")


def reports_dir() -> Path:
    return repo_root() / "reports" / "conformance"


class Context:
    """What a case's inputs and reference need: the spec (shapes, names: data), the folder, and
    the folder as diffusers loads it (conformance/reference: no `wsd` code on that side)."""

    def __init__(self, spec, folder: Path):
        from conformance.reference import ReferenceModel

        self.spec, self.folder = spec, Path(folder)
        self.latent_shape = (1, spec.latent_channels, spec.latent_size, spec.latent_size)
        self.reference = ReferenceModel(self.folder, spec.image_size)


@dataclass
class Reference:
    inputs: object
    outputs: dict[str, np.ndarray]
    ms: float
    drift: str | None
    error: str | None = None


@dataclass
class Harness:
    model: str = "sd15-tiny"
    backends: tuple[str, ...] = DEFAULT_BACKENDS
    dists: dict[str, Path] = field(default_factory=dict)  # backend -> built model folder (default: build)
    golden: golden_mod.Golden | None = None  # default: golden/<model>/ for a seeded model at its own size
    out_dir: Path = field(default_factory=reports_dir)
    timeout_s: float = 600.0
    echo: object = print
    browser: object = None  # a running wsd.host.browser.Browser to share (else one is started)
    playwright: object = None  # pytest-playwright's, when run as a pytest plugin
    weights: Path | None = None  # a user's diffusers folder: references and builds come from it
    image_size: int | None = None  # gate a model at another size than its own (a full-size one at 64x64)
    accept_drift: bool = False  # a deliberate bump: reference drift is a warning, not a failure
    golden_root: Path | None = None  # where golden/<model>/ folders live (default: the checkout's golden/)
    inject: tuple[str, ...] = ()  # shared-code faults every build carries (conformance/faults.py)

    def __post_init__(self):
        from wsd import models
        from wsd.build import check_options

        self.spec = check_options(self.build_options("webgpu"))  # the folder's configs, checked
        self.model = self.spec.name
        seeded = self.weights is None and self.image_size in (None, models.get(self.model).image_size)
        if not seeded:
            self.golden = None  # golden belongs to the seeded models at their own size
        elif self.golden is None and self.model in golden_mod.SEEDED:
            folder = self.golden_root / self.model if self.golden_root else None
            self.golden = golden_mod.Golden(folder, model=self.model)
        self.tolerances = tol_mod.load()
        self.timings = {"build_s": 0.0, "browser_open_s": 0.0, "reference_s": 0.0, "candidate_s": 0.0}
        self._refs: dict[str, Reference] = {}
        self._localized: dict[str, object] = {}
        self._manifests: dict[str, dict] = {}
        self._checked: set[str] = set()
        self._backends: dict[str, object] = {}
        self._browser = self.browser
        self._own_browser = self.browser is None
        self._dawn = None  # a wsd.host.dawn.DawnHost, started for the dawn backend
        self._ctx = None
        self.adapter: dict = {}  # the last GPU adapter opened (the summary's headline)
        self.adapters: dict[str, dict] = {}  # backend -> its adapter
        self.results: list[dict] = []

    # --- artifacts and backends ---------------------------------------------------------

    def build_options(self, target: str):
        from wsd.build import BuildOptions

        common = {"target": target, "image_size": self.image_size, "inject": self.inject}
        if self.weights is not None:
            return BuildOptions(None, weights=str(self.weights), **common)
        return BuildOptions(self.model, random_init=True, **common)

    def describe_model(self) -> dict:
        """What the report says was gated: the model, its folder and the folder's fingerprint."""
        from wsd.build import folder_fingerprint

        return {
            "name": self.spec.name,
            "folder": str(self.ctx.folder),
            "user_folder": self.weights is not None,
            "fingerprint": folder_fingerprint(self.ctx.folder),
            "image_size": self.spec.image_size,
            "golden": "applied"
            if self.golden is not None
            else "not applied (a user's folder)"
            if self.weights is not None
            else f"not applied (golden is made at {self.model}'s own size, this run is at {self.spec.image_size})"
            if self.model in golden_mod.SEEDED
            else f"not applied (no golden for {self.model})",
        }

    @property
    def ctx(self) -> Context:
        if self._ctx is None:
            from wsd.build import random_folder

            folder = self.weights if self.weights is not None else random_folder(self.spec, 0, echo=lambda *_: None)
            self._ctx = Context(self.spec, folder)
        return self._ctx

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
        if name in self._backends:
            return self._backends[name]
        if name == "native":
            from conformance.backends import NativeBackend

            self._backends[name] = NativeBackend(self.dist("native"))
        else:
            self._backends[name] = self._open_gpu(name)
        return self._backends[name]

    def _host(self, name: str):
        """The headless Chromium (webgpu) or the Dawn for Node runner (dawn) that runs the page code."""
        from wsd.webrt import runtime_bundle

        if name == "dawn":
            if self._dawn is None:
                from wsd.host.dawn import DawnHost

                self._dawn = DawnHost(runtime_bundle(echo=self.echo), timeout_s=self.timeout_s).__enter__()
            return self._dawn
        if self._browser is None:
            from wsd.host.browser import Browser

            bundle = runtime_bundle(echo=self.echo)
            self._browser = Browser(bundle, timeout_s=self.timeout_s, playwright=self.playwright).__enter__()
        return self._browser

    def _open_gpu(self, name: str):
        from conformance.backends import WebGPUBackend

        dist = self.dist(name)
        t0 = time.perf_counter()
        host = self._host(name)
        where = "Dawn for Node" if name == "dawn" else "headless Chromium"
        self.echo(f"[conformance] opening {self.model} in {where} (compiles every GPU pipeline once)")
        backend = WebGPUBackend(host.shared_runner(), host.mount(dist), dist, timeout_s=self.timeout_s)
        backend.name = name
        self.adapter = self.adapters[name] = backend.adapter
        self.timings["browser_open_s"] += time.perf_counter() - t0
        self.open_timings = backend.open_timings
        return backend

    def drop_backend(self, name: str) -> None:
        """After a crash or a timeout the page cannot be trusted: the next case reopens it."""
        self._backends.pop(name, None)
        if name == "webgpu" and self._browser is not None:
            self._browser.reset_runner()
        if name == "dawn" and self._dawn is not None:
            self._dawn.reset_runner()

    def close(self) -> None:
        if self._browser is not None and self._own_browser:
            self._browser.__exit__(None, None, None)
        if self._dawn is not None:
            self._dawn.__exit__(None, None, None)
        self._browser = self._dawn = None
        self._backends.clear()

    # --- references ---------------------------------------------------------------------

    def reference(self, case: Case) -> Reference:
        if case.id in self._refs:
            return self._refs[case.id]
        t0 = time.perf_counter()
        inputs = case.stage.inputs(self.ctx, case.params)
        outputs = case.stage.reference(self.ctx.reference, inputs, case.params)
        ms = (time.perf_counter() - t0) * 1000
        self.timings["reference_s"] += ms / 1000
        drift, error = None, None
        try:
            drift = self._drift(case, inputs, outputs)
        except golden_mod.GoldenError as exc:
            error = str(exc)
        ref = Reference(inputs, outputs, ms, drift, error)
        self._refs[case.id] = ref
        return ref

    def _drift(self, case: Case, inputs, outputs) -> str | None:
        if self.golden is None:
            return None
        self.golden.check(self.spec.config_hash())
        stored = self.golden.load(case.id)
        entry = self.golden.manifest["files"][golden_mod.file_name(case.id)]
        if entry.get("inputs") != golden_mod.inputs_digest(inputs):
            return "the golden was made from other inputs (stage inputs changed): regenerate it"
        moved = []
        for out in case.outputs:
            bounds = tol_mod.drift_bound(self.tolerances, case.stage.name, out.name)
            if out.name not in stored:
                moved.append(f"{out.name}: not in the golden file")
                continue
            broken = tol_mod.violations(measure(out.kind, stored[out.name], outputs[out.name]), bounds)
            if broken:
                moved.append(f"{out.name}: {', '.join(broken)}")
        if not moved:
            return None
        from wsd import versions

        made = self.golden.provenance().get("versions", {})
        now = {k: v for k, v in versions.collect().items() if k in made}
        changed = {k: f"{made[k]} -> {now[k]}" for k in made if now.get(k) != made[k]} or "no version changed"
        return (
            f"reference drift beyond the stage's drift bound ({'; '.join(moved)}); golden made with {made}, "
            f"now {now} (changed: {changed})"
        )

    # --- one case on one backend --------------------------------------------------------

    def run(self, case: Case, backend_name: str) -> dict:
        from wsd.host.browser import BrowserError

        dtype = self._dtype(backend_name)
        row = {
            "model": case.model,
            "stage": case.id.split("/", 1)[1],
            "backend": backend_name,
            "dtype": dtype,
            "status": "error",
            "metrics": {},
            "tolerance": {},
            "ms": {"reference": None, "candidate": None},
            "localized_kernel": None,
            "message": "",
            "outputs": {},
            "reference_drift": None,
        }
        try:
            ref = self.reference(case)
            row["ms"]["reference"] = round(ref.ms, 1)
            row["reference_drift"] = ref.drift
            if ref.error:
                row["message"] = ref.error
                return self._done(row)
            if ref.drift and not self.accept_drift:  # the gate's baseline moved: a failure, by name
                row["status"], row["message"] = "fail", ref.drift + "; pass --accept-drift for a deliberate bump"
                return self._done(row)
            missing = [e for e in case.stage.required() if e not in self._entry_points(backend_name)]
            if missing:
                row["status"], row["message"] = "skip", f"the {backend_name} build has no entry point {missing}"
                return self._done(row)
            backend = self.backend(backend_name)
            t0 = time.perf_counter()
            got = case.stage.candidate(backend, self.ctx, ref.inputs, case.params)
            row["ms"]["candidate"] = round((time.perf_counter() - t0) * 1000, 1)
            self.timings["candidate_s"] += time.perf_counter() - t0
            if backend_name in self.adapters:  # every GPU result names the adapter it ran on
                a = self.adapters[backend_name]
                row["adapter"] = " ".join(filter(None, (a.get("vendor"), a.get("architecture"), a.get("description"))))
            self._judge(case, row, ref, got, dtype)
            if row["status"] == "fail" and backend_name in GPU_BACKENDS and case.stage.entry:
                self._localize(case, row, ref, backend_name)
            self._images(case, row, ref, got)
        except BrowserError as exc:
            row["message"] = str(exc)
            if exc.kind in ("crash", "timeout", "launch"):
                self.drop_backend(backend_name)
        except Exception as exc:  # noqa: BLE001 (a stage that raises is an error row, never a pass)
            row["message"] = f"{type(exc).__name__}: {exc}"
        return self._done(row)

    def _done(self, row: dict) -> dict:
        self.results.append(row)
        return row

    def _manifest(self, backend_name: str) -> dict:
        if backend_name not in self._manifests:
            from wsd import manifest

            self._manifests[backend_name] = manifest.load(self.dist(backend_name))
        return self._manifests[backend_name]

    def _entry_points(self, backend_name: str) -> dict:
        return self._manifest(backend_name)["entry_points"]

    def _dtype(self, backend_name: str) -> str:
        try:
            return self._manifest(backend_name).get("dtype", "float32")
        except Exception:  # noqa: BLE001 (reported by the run itself)
            return "float32"

    def _judge(self, case: Case, row: dict, ref: Reference, got: dict, dtype: str) -> None:
        problems = []
        for out in case.outputs:
            bounds = tol_mod.lookup(self.tolerances, case.stage.name, out.dtype or dtype, out.name)
            metrics = measure(out.kind, ref.outputs[out.name], np.asarray(got[out.name]))
            broken = tol_mod.violations(metrics, bounds)
            row["outputs"][out.name] = {"metrics": metrics, "tolerance": bounds, "violations": broken}
            problems += [f"{out.name}: {b}" for b in broken]
        first = row["outputs"][case.outputs[0].name]
        row["metrics"], row["tolerance"] = first["metrics"], first["tolerance"]
        # The image output's SSIM/PSNR are what people read first for image stages.
        for out in case.outputs:
            if out.kind == "image":
                row["metrics"] = {**row["metrics"], **{k: v for k, v in row["outputs"][out.name]["metrics"].items()}}
        row["status"] = "fail" if problems else "pass"
        row["message"] = "; ".join(problems)
        if row["reference_drift"]:
            row["message"] = (
                (row["message"] + "; " if row["message"] else "") + "reference drift: " + row["reference_drift"]
            )

    def _localize(self, case: Case, row: dict, ref: Reference, gpu: str = "webgpu") -> None:
        if "native" not in self.backends and not self.dists.get("native"):
            return
        native_row = self.run_quiet(case, "native")
        if native_row["status"] != "pass":
            row["message"] += "; fails on native too: a capture/compiler fault, not WebGPU's"
            return
        key = (gpu, case.stage.entry)
        found = self._localized.get(key)
        if found is None:  # one replay per entry point: its other cases share the verdict
            self.echo(f"[conformance] {case.id} fails on {gpu} only: localizing kernel by kernel")
            try:
                found = self._replay(case, ref, gpu)
            except Exception as exc:  # noqa: BLE001 (the verdict stands; say why there is no kernel)
                row["message"] += f"; WebGPU only (native passes); localization failed: {exc}"
                return
            self._localized[key] = found
        row["localized_kernel"] = found.kernel
        row["message"] += f"; WebGPU only (native passes): {found.message}"

    def _replay(self, case: Case, ref: Reference, gpu: str = "webgpu"):
        from conformance.localize import localize

        out = case.outputs[0]
        return localize(
            self.backend("native"),
            self.backend(gpu),
            self.dist(gpu),
            case.stage.entry,
            self._entry_inputs(case, ref),
            case.id,
            self.out_dir / "repro",
            bounds=tol_mod.lookup(self.tolerances, case.stage.name, out.dtype or self._dtype(gpu), out.name),
        )

    def _entry_inputs(self, case: Case, ref: Reference) -> list[np.ndarray]:
        if case.stage.name == "scheduler":  # the first step of the loop reproduces a step fault
            noise, eps = ref.inputs
            zeros = np.zeros_like(noise)
            return [noise, eps[0], zeros, zeros, zeros, zeros, np.ones(8, "float32")]
        return entry_args(ref.inputs)

    def run_quiet(self, case: Case, backend_name: str) -> dict:
        """A backend's verdict on a case without adding a row (cached if it already ran)."""
        for row in self.results:
            if row["backend"] == backend_name and f"{row['model']}/{row['stage']}" == case.id:
                return row
        before = len(self.results)
        row = self.run(case, backend_name)
        del self.results[before:]
        return row

    def _images(self, case: Case, row: dict, ref: Reference, got: dict) -> None:
        from conformance.report import save_triptych

        for out in case.outputs:
            arr, cand = np.asarray(ref.outputs[out.name]), np.asarray(got[out.name])
            if out.name == "rgba" and arr.ndim == 2:  # packed canvas words: show them as the pixels they are
                arr, cand = unpack_rgba(arr), unpack_rgba(cand)
            if arr.ndim >= 3 and arr.shape[-1] == 3:
                row.setdefault("images", {})[out.name] = save_triptych(
                    self.out_dir / "images", f"{case.id}__{row['backend']}__{out.name}", arr, cand
                )


def unpack_rgba(words: np.ndarray) -> np.ndarray:
    """(H, W) int32 words R + G<<8 + B<<16 + A<<24 -> (H, W, 3) RGB."""
    b = np.ascontiguousarray(words.astype(np.int32)).view(np.uint8).reshape(*words.shape, 4)
    return b[..., :3].astype(np.float64)


def all_cases(model: str = "sd15-tiny", family: str | None = None) -> list[Case]:
    """Every case of a model; `family` for a name that is not a preset (a user's folder)."""
    from wsd import models

    return cases(model, STAGES, family or models.get(model).family)
