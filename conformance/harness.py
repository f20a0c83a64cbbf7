"""Runs stage cases on backends and turns each into a result row of summary.json.

One Harness per model and session: the reference of a case is computed once and shared by the
backends (conformance/reference); the candidates are built and opened once
(conformance/candidates.py); a verdict is judging.py's; a case that fails on WebGPU only is
localized kernel by kernel against the native build (localize.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from conformance import golden as golden_mod
from conformance import judging, report
from conformance import perf as perf_mod
from conformance import tolerances as tol_mod
from conformance.candidates import DEFAULT_BACKENDS, GPU_BACKENDS, Candidates
from conformance.stages import Case
from wsd.paths import work_dir


def reports_dir() -> Path:
    return work_dir() / "reports" / "conformance"


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
    entries: tuple[str, ...] = ()  # entry points to build (empty: all); a `-k` run builds what it runs
    perf: bool = False  # --perf: timed stages on GPU backends against a perf baseline (conformance/perf.py)
    gemm_path: str = "auto"  # --gemm-path: a --subgroup-matrix build's GEMMs: fastest, tiled or TVM's
    perf_runs: int = perf_mod.RUNS
    perf_baseline: Path | None = None  # default: conformance/perf/<adapter>.json

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
        self._ctx = None
        self.results: list[dict] = []
        self.candidates = Candidates(
            self.model,
            self.build_options,
            self.dists,
            self.out_dir,
            self.timings,
            timeout_s=self.timeout_s,
            echo=self.echo,
            playwright=self.playwright,
            browser=self.browser,
            profile=self.perf,
            gemm_path=self.gemm_path,
        )
        self._perf_baselines: dict[Path, dict] = {}

    # --- the candidates (conformance/candidates.py) ----------------------------------------

    @property
    def adapter(self) -> dict:
        return self.candidates.adapter

    @property
    def adapters(self) -> dict[str, dict]:
        return self.candidates.adapters

    def dist(self, backend: str) -> Path:
        return self.candidates.dist(backend)

    def backend(self, name: str):
        return self.candidates.backend(name)

    def close(self) -> None:
        self.candidates.close()

    def share_references(self, other: Harness) -> None:
        """Use another harness's inputs and references (a self-test against its clean baseline)."""
        self._ctx, self._refs = other.ctx, other._refs

    # --- artifacts and backends ---------------------------------------------------------

    def build_options(self, target: str):
        """How to build for `target`: the whole model, or only `entries`, the same for both targets
        (the localizer pairs their kernels by name, and TVM numbers a kernel by the module it is in)."""
        from wsd.build import BuildOptions

        common = {"target": target, "image_size": self.image_size, "inject": self.inject, "entries": self.entries}
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
            "built_entries": self._built_entries(),
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
        return judging.drift(self.golden, self.spec.config_hash(), case, inputs, outputs, self.tolerances)

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
            judging.judge(case, row, ref.outputs, got, dtype, self.tolerances)
            if row["status"] == "fail" and backend_name in GPU_BACKENDS and case.stage.entry:
                self._localize(case, row, ref, backend_name)
            elif self.perf and row["status"] == "pass" and backend_name in GPU_BACKENDS and case.stage.timed:
                self._perf(case, row, ref, backend, backend_name)  # right, and now: as fast as before?
            report.attach_images(row, case, ref.outputs, got, self.out_dir)
        except BrowserError as exc:
            row["message"] = str(exc)
            if exc.kind in ("crash", "timeout", "launch"):
                self.candidates.drop(backend_name)
        except Exception as exc:  # noqa: BLE001 (a stage that raises is an error row, never a pass)
            row["message"] = f"{type(exc).__name__}: {exc}"
        return self._done(row)

    def _perf(self, case: Case, row: dict, ref: Reference, backend, backend_name: str) -> None:
        """Time the stage again (perf_runs calls) and judge it against the adapter's baseline. With
        no baseline for this adapter or stage the times are recorded, not judged."""
        from conformance.stages import entry_args

        adapter = self.adapters.get(backend_name, {})
        measured = perf_mod.measure(backend, case.params["entry"], entry_args(ref.inputs), self.perf_runs)
        build = perf_mod.build_of(self._manifest(backend_name))
        row["perf"] = {
            "device": perf_mod.device_key(adapter),
            "build": build,
            "measured": measured,
            "baseline_ms": None,
        }
        path = self.perf_baseline or perf_mod.default_path(adapter)
        if path not in self._perf_baselines:
            if self.perf_baseline is None and not path.is_file():
                self._perf_baselines[path] = {"stages": {}, "missing": f"no perf baseline for {row['perf']['device']}"}
            else:
                self._perf_baselines[path] = perf_mod.load(path)  # a named baseline must exist: PerfError
        base = self._perf_baselines[path]
        entry = base["stages"].get(perf_mod.stage_key(row))
        if entry is None:
            row["perf"]["verdict"] = base.get("missing") or f"{path.name} has no baseline for this stage"
            return
        slower, text, grew = perf_mod.judge(measured, entry)
        text += perf_mod.other_build(entry.get("build"), build)
        gpu = {"baseline_gpu_ms": entry["gpu"]["min_ms"]} if entry.get("gpu") else {}
        row["perf"].update(baseline_ms=entry["min_ms"], **gpu, verdict=text, grew=grew)
        if slower:
            row["status"], row["message"] = "fail", f"perf: {text}"
            row["localized_kernel"] = grew[0]["kernel"] if grew else None

    def _done(self, row: dict) -> dict:
        self.results.append(row)
        return row

    def _manifest(self, backend_name: str) -> dict:
        if backend_name not in self._manifests:
            from wsd import manifest

            self._manifests[backend_name] = manifest.load(self.dist(backend_name))
        return self._manifests[backend_name]

    def _built_entries(self) -> dict:
        """backend -> the entry points its dist has ("all", or the ones a `-k` run built)."""
        from wsd.entries import entries_for

        every = [e.name for e in entries_for(self.spec)]
        out = {}
        for backend in self.candidates.dists:
            names = [e for e in every if e in self._entry_points(backend)]
            out[backend] = "all" if names == every else names
        return out

    def _entry_points(self, backend_name: str) -> dict:
        return self._manifest(backend_name)["entry_points"]

    def _dtype(self, backend_name: str) -> str:
        try:
            return self._manifest(backend_name).get("dtype", "float32")
        except Exception:  # noqa: BLE001 (reported by the run itself)
            return "float32"

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
        from conformance.localize import case_inputs, localize

        out = case.outputs[0]
        return localize(
            self.backend("native"),
            self.backend(gpu),
            self.dist(gpu),
            case.stage.entry,
            case_inputs(case, ref.inputs),
            case.id,
            self.out_dir / "repro",
            bounds=tol_mod.lookup(self.tolerances, case.stage.name, out.dtype or self._dtype(gpu), out.name),
        )

    def run_quiet(self, case: Case, backend_name: str) -> dict:
        """A backend's verdict on a case without adding a row (cached if it already ran)."""
        for row in self.results:
            if row["backend"] == backend_name and f"{row['model']}/{row['stage']}" == case.id:
                return row
        before = len(self.results)
        row = self.run(case, backend_name)
        del self.results[before:]
        return row
