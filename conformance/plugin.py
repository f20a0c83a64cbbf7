"""The harness as a pytest plugin: every (stage case, backend) is a test id.

    pytest -p conformance.plugin -m conformance conformance/gate -k unet
    tox -e conformance                       # all stages, webgpu and native
    tox -e conformance -- --inject dropped-bias   # must fail, naming the stage and kernel

Its parts, one job each: options.py (the command line), this module (cases as test ids, one
Harness per model), workers.py (one xdist worker per model), gate_report.py (the reports at the end,
in reports/conformance/).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from conformance import gate_report, workers
from conformance.candidates import BACKENDS, DEFAULT_BACKENDS, GPU_BACKENDS
from conformance.harness import Harness, reports_dir
from conformance.options import injected, model_names
from conformance.stages import all_cases

pytest_plugins = ["conformance.options", "conformance.workers", "conformance.gate_report"]


def pytest_configure(config):
    config.addinivalue_line("markers", "conformance: a stage of the conformance harness")
    backends = config.getoption("--backend") or DEFAULT_BACKENDS
    fault = injected(config)
    if fault is not None and fault.shared_code:
        # a bug in the product's Python: every build has it and so do the gate's own inputs
        patch = fault.patched()
        patch.__enter__()
        config.add_cleanup(lambda: patch.__exit__(None, None, None))
    elif fault is not None and not set(backends) & set(GPU_BACKENDS):
        # faults go into the webgpu build; a native-only run would pass without ever seeing one
        raise pytest.UsageError(f"--inject {fault.name} breaks the webgpu build: add --backend webgpu (or dawn)")
    if config.getoption("--perf") and not set(backends) & set(GPU_BACKENDS):
        raise pytest.UsageError("--perf times GPU backends: add --backend webgpu (or dawn)")
    if config.getoption("--perf-runs") < 2:
        raise pytest.UsageError("--perf-runs must be at least 2 (the noise is measured between runs)")


def pytest_generate_tests(metafunc):
    if "conformance_case" not in metafunc.fixturenames:
        return
    config = metafunc.config
    backends = config.getoption("--backend") or list(DEFAULT_BACKENDS)
    # native first: its verdicts are there when a WebGPU failure is classified and localized
    order = sorted(backends, key=lambda b: b != "native")
    params = [
        (case, backend)
        for gated in model_names(config)
        for backend in order
        for case in all_cases(gated.name, gated.family, gated.inpainting, gated.samplers)
    ]
    metafunc.parametrize("conformance_case", params, ids=[f"{c.id}[{b}]" for c, b in params])


@pytest.hookimpl(trylast=True)  # after -k and -m have deselected
def pytest_collection_modifyitems(config, items):
    """The entry points each model's selected cases call: a `-k clip` run (a bisect, a fault's check)
    builds CLIP alone instead of the whole model."""
    needed: dict[str, set[str]] = {}
    for item in items:
        params = getattr(item, "callspec", None) and item.callspec.params
        if params and "conformance_case" in params:
            case, _ = params["conformance_case"]
            needed.setdefault(case.model, set()).update(case.stage.required())
    config.stash[NEEDED] = needed


NEEDED = pytest.StashKey[dict]()


class Harnesses:
    """One Harness per model the run gates, made when its first case runs; a case asks by name."""

    def __init__(self, request):
        self.request = request
        self.made: dict[str, Harness] = {}
        self.extra: dict = {}

    def get(self, model: str) -> Harness:
        if model not in self.made:
            self.made[model] = self._make(model)
        return self.made[model]

    def _make(self, model: str) -> Harness:
        config = self.request.config
        weights = config.getoption("--weights")
        dists = {}
        for item in config.getoption("--built"):
            backend, _, folder = item.partition("=")
            if backend not in BACKENDS or not folder:
                raise pytest.UsageError(
                    f"--built {item}: expected BACKEND=DIR with BACKEND one of {', '.join(BACKENDS)}"
                )
            dists[backend] = Path(folder)
        golden_root = config.getoption("--golden")
        backends = tuple(config.getoption("--backend") or DEFAULT_BACKENDS)
        h = Harness(
            dists=dists,
            model=model,
            weights=Path(weights) if weights else None,
            image_size=config.getoption("--image-size"),
            accept_drift=config.getoption("--accept-drift"),
            timeout_s=config.getoption("--stage-timeout"),
            golden_root=Path(golden_root) if golden_root else None,
            backends=backends,
            perf=config.getoption("--perf"),
            gemm_path=config.getoption("--gemm-path"),
            perf_runs=config.getoption("--perf-runs"),
            perf_baseline=Path(config.getoption("--perf-baseline")) if config.getoption("--perf-baseline") else None,
            out_dir=Path(config.getoption("--report-dir") or reports_dir()),
            # Chromium only for the webgpu backend: the dawn backend runs where Playwright is not installed.
            playwright=self.request.getfixturevalue("playwright") if "webgpu" in backends else None,
            # one Chromium for every model: the next harness reuses the first one's
            browser=next((m.candidates.browser for m in self.made.values() if m.candidates.browser is not None), None),
        )
        h.entries = _narrowed(h, config.stash.get(NEEDED, {}).get(model, set()))
        chosen = injected(config)
        if chosen is not None and chosen.shared_code:
            h.inject = (chosen.inject,)  # both builds carry it (keyed apart from the clean ones)
            self.extra.setdefault(
                "injected_fault", {"name": chosen.name, "what": chosen.what, "expect": chosen.expect, "kernel": None}
            )
        elif chosen is not None:
            from conformance.faults import injected_kernel

            work = Path(tempfile.mkdtemp(prefix="wsd-fault-"))
            gpus = [b for b in h.backends if b in GPU_BACKENDS] or ["webgpu"]
            faulted = chosen.make(h.dist(gpus[0]), work)
            for gpu in gpus:  # Chromium and Dawn run the same (faulted) webgpu build
                h.dists[gpu] = faulted
            self.extra.setdefault(
                "injected_fault",
                {"name": chosen.name, "what": chosen.what, "expect": chosen.expect, "kernel": injected_kernel(faulted)},
            )
        return h

    def close(self) -> None:
        for h in reversed(list(self.made.values())):  # the browser's owner (the first) closes last
            h.close()

    def part(self) -> dict | None:
        """What this process gated, as JSON-able parts of the report (merged across xdist workers)."""
        made = list(self.made.values())
        if not made:
            return None
        return {
            "results": [r for h in made for r in h.results],
            "models": [h.describe_model() for h in made],
            "adapters": {k: v for h in made for k, v in h.adapters.items()},
            "adapter": next((h.adapter for h in made if h.adapter), {}),
            "timings": {k: sum(h.timings[k] for h in made) for k in made[0].timings},
            "extra": dict(self.extra),
            "out_dir": str(made[0].out_dir),
        }


def _narrowed(h: Harness, needed: set[str]) -> tuple[str, ...]:
    """The entries to build: all (an empty tuple) unless the selected cases call fewer."""
    from wsd.entries import entries_for

    every = [e.name for e in entries_for(h.spec)]
    return () if not needed or set(every) <= needed else tuple(e for e in every if e in needed)


@pytest.fixture(scope="session")
def harnesses(request):
    config = request.config
    all_of = Harnesses(request)
    yield all_of
    all_of.close()
    part = all_of.part()
    if part is None:
        return
    if workers.is_worker(config):  # the controller writes the reports
        workers.send_part(config, part)
    else:
        gate_report.write_reports(config, [part])


def pytest_sessionfinish(session):
    parts = workers.received_parts(session.config)
    if parts:  # the xdist controller, once every worker is down
        gate_report.write_reports(session.config, parts)
