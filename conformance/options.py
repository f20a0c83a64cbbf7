"""The gate's command-line options (a pytest plugin module) and what they select: the models,
the injected fault, the stages whose skip is expected."""

from __future__ import annotations

from typing import NamedTuple

import pytest

from conformance.candidates import BACKENDS
from conformance.perf import RUNS
from wsd.host.modules import GEMM_PATHS

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
        "--perf",
        action="store_true",
        help="time each timed stage on a GPU backend and fail one slower than its perf baseline (conformance/perf.py)",
    )
    group.addoption("--perf-runs", type=int, default=RUNS, help=f"timed calls per stage with --perf (default {RUNS})")
    group.addoption(
        "--perf-baseline",
        default=None,
        metavar="FILE",
        help="the perf baseline to judge against (default conformance/perf/<adapter>.json)",
    )
    group.addoption(
        "--gemm-path",
        choices=GEMM_PATHS,
        default="auto",
        help="a --subgroup-matrix build's GEMMs on GPU backends: the fastest the device offers (auto), "
        "the tiled WGSL, or TVM's own kernels, so that each path a device can run is gated",
    )
    group.addoption(
        "--allow-skip",
        action="append",
        default=[],
        metavar="STAGE",
        help="a stage whose skip is expected (repeatable); any other skip fails the gate",
    )


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


def allowed_skip(config, stage: str) -> bool:
    """Whether the run named this stage (or its family, `unet` for `unet/t1-g7.5`) as an expected skip."""
    allowed = config.getoption("--allow-skip") or []
    return any(stage == a or stage.startswith(a.rstrip("/") + "/") for a in allowed)


class Gated(NamedTuple):
    name: str  # the name the cases carry
    family: str
    inpainting: bool = False  # an inpainting UNet: its pipeline cases start from an image and a mask
    samplers: tuple[str, ...] | None = None  # the samplers it has, where not every one (an LCM folder)


def model_names(config) -> list[Gated]:
    """The models the run gates: the --model presets (default: every family's tiny twin; one model
    with --built, whose folders are one model's), or with --weights what the build will call the
    user's folder."""
    from wsd import models

    weights = config.getoption("--weights")
    if not weights:
        names = config.getoption("--model") or (["sd15-tiny"] if config.getoption("--built") else list(DEFAULT_MODELS))
        if config.getoption("--built") and len(names) > 1:
            raise pytest.UsageError("--built gates one model's build: pass one --model")
        return [Gated(name, models.get(name).family) for name in dict.fromkeys(names)]
    from wsd.build import BuildOptions, check_options

    spec = check_options(BuildOptions(None, weights=weights, image_size=config.getoption("--image-size")))
    every = models.get(spec.family).schedulers
    samplers = None if len(spec.schedulers) == len(every) else tuple(s.name for s in spec.schedulers)
    return [Gated(spec.name, spec.family, spec.inpainting, samplers)]
