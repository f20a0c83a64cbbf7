"""The blind spot issue 33 closed, kept as a regression test: for each bug in a product helper the
gate's references used to call, the old reference recipe (the product's helper on both sides)
agrees with the faulty product, and the independent reference (conformance.reference) does not.
tests/test_conformance/test_gate_exits.py runs each fault through the gate itself and watches it fail."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conformance.reference import ReferenceModel
from conformance.reference import stages as reference
from wsd import faults, models
from wsd import schedulers as S
from wsd.build import random_folder


@pytest.fixture(scope="module")
def sd15():
    spec = models.get("sd15-tiny")
    return spec, random_folder(spec, 0, echo=lambda *_: None)


def timesteps(sched, steps: int = 4) -> list[float]:
    sched.set_timesteps(steps)
    return [float(t) for t in sched.timesteps.numpy()]


def test_sampler_defaults(sd15):
    spec, folder = sd15
    sampler = spec.scheduler("dpm-solver++")
    with faults.shared_code(("sampler-defaults@scheduler_step",)):
        product = S.table(sampler, spec.scheduler_config, 4)["timesteps"]
        old_reference = timesteps(S.make_scheduler(sampler, spec.scheduler_config))  # what the gate called
    assert product == old_reference  # blind: both sides carry PNDM's leading spacing
    assert product != timesteps(ReferenceModel(folder).sampler("dpm-solver++"))  # caught
    assert S.table(sampler, spec.scheduler_config, 4)["timesteps"] == timesteps(
        ReferenceModel(folder).sampler("dpm-solver++")
    )


def test_loader_drops_key(sd15):
    from wsd.models import folder as loader

    spec, folder = sd15
    sampler = spec.scheduler("pndm")
    with faults.shared_code(("loader-drops-steps-offset@scheduler_step",)):
        loaded = loader.load(spec, folder, weights=False).scheduler_config
        product = S.table(sampler, loaded, 4)["timesteps"]
        old_reference = timesteps(S.make_scheduler(sampler, loaded))  # the old gate read the same loader
    assert "steps_offset" not in loaded and product == old_reference  # blind
    assert product != timesteps(ReferenceModel(folder).sampler("pndm"))  # caught: one step off


def test_prediction_swapped(sd15):
    from wsd.models import folder as loader

    spec, folder = sd15
    sampler = spec.scheduler("ddim")
    with faults.shared_code(("prediction-swapped@scheduler_step",)):
        loaded = loader.load(spec, folder, weights=False).scheduler_config
        product = S.table(sampler, loaded, 4)
    S.require_reproducible([sampler], loaded)  # blind: the build's own check reads the same loader
    assert loaded["prediction_type"] == "v_prediction"
    clean = S.table(sampler, ReferenceModel(folder).scheduler_config, 4)
    assert product["timesteps"] == clean["timesteps"]  # same timesteps, other coefficients: caught by value
    assert np.abs(np.subtract(product["coeffs"], clean["coeffs"])).max() > 0.1


def test_cfg_swapped(sd15):
    from conformance.harness import Context
    from conformance.stages import STAGES
    from wsd.entries import entries_for
    from wsd.models.folder import load

    spec, folder = sd15
    stage = next(s for s in STAGES if s.name == "unet")
    ctx = Context(spec, folder)
    inputs = stage.inputs(ctx, stage.variants["t981-g7.5"])
    args = [torch.from_numpy(np.asarray(x)) for x in inputs.values()]
    entry = next(e for e in entries_for(spec) if e.name == "unet")
    model = load(spec, folder)
    with faults.shared_code(("cfg-swapped@unet",)), torch.no_grad():
        product = entry.wrapper(model)(*args).numpy()  # what the build captures
        old_reference = entry.wrapper(model)(*args).numpy()  # the old gate ran the same wrapper
    assert np.array_equal(product, old_reference)  # blind
    new = reference.unet(ctx.reference, inputs, {})["noise_pred"]
    assert np.abs(product - new).max() > 1e-2  # caught (the unet stage's bound is 5e-4)
    with torch.no_grad():
        clean = entry.wrapper(model)(*args).numpy()
    assert np.abs(clean - new).max() < 5e-4


def test_time_ids():
    from conformance.harness import Context
    from conformance.stages import STAGES

    spec = models.get("sdxl-tiny")
    ctx = Context(spec, random_folder(spec, 0, echo=lambda *_: None))
    stage = next(s for s in STAGES if s.name == "unet")
    with faults.shared_code(("time-ids-of-latents@unet",)):
        sent = stage.inputs(ctx, stage.variants["t981-g7.5"])["time_ids"]  # the page's (the plan's)
    # the old gate fed these same inputs to its reference wrapper: blind. The new reference makes its own:
    own = ctx.reference.add_time_ids().numpy()
    assert not np.array_equal(sent[:1], own)  # caught
    assert np.array_equal(stage.inputs(ctx, stage.variants["t981-g7.5"])["time_ids"][:1], own)  # clean: equal
