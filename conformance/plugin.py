"""The harness as a pytest plugin: every (stage case, backend) is a test id.

    pytest -p conformance.plugin -m conformance tests/conformance -k unet
    tox -e conformance                       # all stages, webgpu and native
    tox -e conformance -- --inject dropped-bias   # must fail, naming the stage and kernel

At the end of the session the reports are written to reports/conformance/.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import pytest

from conformance import report
from conformance.harness import BACKENDS, DEFAULT_BACKENDS, GPU_BACKENDS, Harness, all_cases

try:
    from xdist.scheduler import LoadScopeScheduling
except ImportError:  # without pytest-xdist the gate runs in one process
    LoadScopeScheduling = object

DEFAULT_MODELS = ("sd15-tiny", "sdxl-tiny")  # the seeded tiny twin of each family


def pytest_addoption(parser):
    group = parser.getgroup("wsd-conformance")
    group.addoption(
        "--model",
        action="append",
        default=[],
        help=f"model spec to check (repeatable; default {' and '.join(DEFAULT_MODELS)}, or sd15-tiny with --built)",
    )
    group.addoption(
        "--backend",
        action="append",
        choices=BACKENDS,
        help="backend(s) to run (default: webgpu and native; dawn: Dawn for Node, a real GPU where there is one)",
    )
    group.addoption(
        "--inject", metavar="FAULT", help="inject a fault into the webgpu build (see conformance/faults.py)"
    )
    group.addoption("--report-dir", default=None, help="where the reports go (default reports/conformance)")
    group.addoption("--weights", default=None, help="gate a user's diffusers folder (its configs decide the model)")
    group.addoption("--image-size", type=int, default=None, help="gate at this image size (default: the model's)")
    group.addoption(
        "--stage-timeout",
        type=float,
        default=600.0,
        help="seconds one case may take in the page (the full architecture on SwiftShader needs more)",
    )
    group.addoption("--golden", default=None, help="the golden root (default golden/ in the checkout)")
    group.addoption(
        "--built",
        action="append",
        default=[],
        metavar="BACKEND=DIR",
        help="gate an already built dist/<model> for a backend (webgpu=..., native=...) instead of building",
    )
    group.addoption(
        "--accept-drift", action="store_true", help="reference drift from golden/ is a warning (a deliberate bump)"
    )
    group.addoption(
        "--allow-skip",
        action="append",
        default=[],
        metavar="STAGE",
        help="a stage whose skip is expected (repeatable); any other skip fails the gate",
    )


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


def injected(config):
    """The --inject fault (conformance/faults.py), or None."""
    name = config.getoption("--inject")
    if not name:
        return None
    from conformance.faults import get

    try:
        return get(name)
    except KeyError as exc:
        raise pytest.UsageError(str(exc.args[0])) from None


def pytest_generate_tests(metafunc):
    if "conformance_case" not in metafunc.fixturenames:
        return
    config = metafunc.config
    backends = config.getoption("--backend") or list(DEFAULT_BACKENDS)
    # native first: its verdicts are there when a WebGPU failure is classified and localized
    order = sorted(backends, key=lambda b: b != "native")
    params = [
        (case, backend) for name, family in model_names(config) for backend in order for case in all_cases(name, family)
    ]
    metafunc.parametrize("conformance_case", params, ids=[f"{c.id}[{b}]" for c, b in params])


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
            out_dir=Path(config.getoption("--report-dir") or report_default()),
            # Chromium only for the webgpu backend: the dawn backend runs where Playwright is not installed.
            playwright=self.request.getfixturevalue("playwright") if "webgpu" in backends else None,
            # one Chromium for every model: the next harness reuses the first one's
            browser=next((m._browser for m in self.made.values() if m._browser is not None), None),
        )
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


@pytest.fixture(scope="session")
def harnesses(request):
    config = request.config
    all_of = Harnesses(request)
    yield all_of
    all_of.close()
    part = all_of.part()
    if part is None:
        return
    if hasattr(config, "workeroutput"):  # a pytest-xdist worker: the controller writes the reports
        config.workeroutput[PART_KEY] = json.dumps(part)
    else:
        write_reports(config, [part])


# --- under pytest-xdist (`-n 2 --dist loadscope`): one worker per model, one report ----------
PART_KEY = "wsd_conformance_part"
PARTS = pytest.StashKey[list]()
STARTED = pytest.StashKey[float]()


class ModelScopes(LoadScopeScheduling):
    """Each model's cases on one worker (its harness, browser page and native verdicts stay
    together); other tests keep loadscope's module scopes."""

    def _split_scope(self, nodeid: str) -> str:
        _, bracket, case = nodeid.partition("::test_stage[")
        return f"model:{case.split('/', 1)[0]}" if bracket else super()._split_scope(nodeid)


@pytest.hookimpl(optionalhook=True)  # pytest-xdist's hooks: absent without it
def pytest_xdist_make_scheduler(config, log):
    return ModelScopes(config, log) if config.getvalue("dist") == "loadscope" else None


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    part = getattr(node, "workeroutput", {}).get(PART_KEY)
    if part:
        node.config.stash.setdefault(PARTS, []).append(json.loads(part))


def pytest_sessionstart(session):
    session.config.stash[STARTED] = time.perf_counter()


def pytest_sessionfinish(session):
    parts = session.config.stash.get(PARTS, None)
    if parts:  # the xdist controller, once every worker is down
        write_reports(session.config, parts)


def write_reports(config, parts: list[dict]) -> None:
    """summary.json and index.html from what each process (one, or one per xdist worker) gated."""
    order = {name: i for i, (name, _) in enumerate(model_names(config))}
    parts = sorted(parts, key=lambda p: order.get(p["models"][0]["name"], len(order)))
    results = [r for p in parts for r in p["results"]]
    extra = {k: v for p in reversed(parts) for k, v in p["extra"].items()}
    extra["model"] = parts[0]["models"][0]
    extra["models"] = [m for p in parts for m in p["models"]]
    extra["skips"] = [
        {
            "case": f"{r['model']}/{r['stage']}",
            "backend": r["backend"],
            "reason": r["message"],
            "allowed": allowed_skip(config, r["stage"]),
        }
        for r in results
        if r["status"] == "skip"
    ]
    extra["drift"] = [
        {"case": f"{r['model']}/{r['stage']}", "backend": r["backend"], "drift": r["reference_drift"]}
        for r in results
        if r.get("reference_drift")
    ]
    extra["adapters"] = {k: v for p in parts for k, v in p["adapters"].items()}
    timings = {k: round(sum(p["timings"][k] for p in parts), 3) for k in parts[0]["timings"]}
    adapter = next((p["adapter"] for p in parts if p["adapter"]), {})
    wall = time.perf_counter() - config.stash.get(STARTED, time.perf_counter())
    body = report.summary(results, adapter, wall, {**extra, "timings": timings})
    paths = report.write(Path(parts[0]["out_dir"]), body)
    terminal = config.pluginmanager.get_plugin("terminalreporter")
    if terminal is not None:
        names = ", ".join(m["name"] for m in extra["models"])
        terminal.write_line(
            f"wsd conformance ({names}): {body['totals']} in {body['wall_s']} s; timings {rounded(timings)}"
        )
        for skip in body.get("skips", []):
            mark = "expected" if skip["allowed"] else "NOT ALLOWED"
            terminal.write_line(f"  skip ({mark}): {skip['case']} [{skip['backend']}]: {skip['reason']}")
        terminal.write_line(f"reports: {', '.join(str(p) for p in paths.values())}")


def allowed_skip(config, stage: str) -> bool:
    """Whether the run named this stage (or its family, `unet` for `unet/t1-g7.5`) as an expected skip."""
    allowed = config.getoption("--allow-skip") or []
    return any(stage == a or stage.startswith(a.rstrip("/") + "/") for a in allowed)


def model_names(config) -> list[tuple[str, str]]:
    """The models the run gates, as (the name the cases carry, the family): the --model presets
    (default: every family's tiny twin; one model with --built, whose folders are one model's),
    or with --weights what the build will call the user's folder."""
    from wsd import models

    weights = config.getoption("--weights")
    if not weights:
        names = config.getoption("--model") or (["sd15-tiny"] if config.getoption("--built") else list(DEFAULT_MODELS))
        if config.getoption("--built") and len(names) > 1:
            raise pytest.UsageError("--built gates one model's build: pass one --model")
        return [(name, models.get(name).family) for name in dict.fromkeys(names)]
    from wsd.build import BuildOptions, check_options

    spec = check_options(BuildOptions(None, weights=weights, image_size=config.getoption("--image-size")))
    return [(spec.name, spec.family)]


def report_default() -> Path:
    from conformance.harness import reports_dir

    return reports_dir()


def rounded(timings: dict) -> dict:
    return {k: round(v, 1) for k, v in timings.items()}
