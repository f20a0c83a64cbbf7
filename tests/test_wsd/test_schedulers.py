"""Our sampler tables + one linear step, against diffusers' own `step`, over whole loops."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from wsd import models
from wsd import schedulers as S

SPEC = models.get("sd15-tiny")
NAMES = [s.name for s in SPEC.schedulers]


def fake_unet(x: np.ndarray, i: int, rng_noise: np.ndarray) -> np.ndarray:
    """A model output that depends on its input, as a UNet's does (so history matters)."""
    return (0.5 * np.tanh(x) + 0.3 * rng_noise).astype("float32")


def run_loops(name: str, steps: int, step_fn=S.step_numpy):
    sched_spec = SPEC.scheduler(name)
    table = S.table(sched_spec, SPEC.scheduler_config, steps)
    reference = S.make_scheduler(sched_spec, SPEC.scheduler_config)
    reference.set_timesteps(steps)
    rng = np.random.default_rng(7)
    start = rng.standard_normal((1, 4, 8, 8)).astype("float32") * np.float32(table["init_noise_sigma"])
    ours, theirs = start.copy(), torch.from_numpy(start.copy())
    state = S.LoopState(ours)
    draws = S.TwinDraws(reference, 11, start.shape)  # Euler Ancestral and LCM: the same draws on both sides
    worst = 0.0
    assert len(reference.timesteps) == len(table["timesteps"])
    for i, t in enumerate(reference.timesteps):
        assert float(t) == pytest.approx(table["timesteps"][i])
        noise = rng.standard_normal(start.shape).astype("float32")
        eps_ref = torch.from_numpy(fake_unet(reference.scale_model_input(theirs, t).numpy(), i, noise))
        theirs = reference.step(eps_ref, t, theirs, **draws.step_kwargs).prev_sample
        eps = fake_unet(ours * np.float32(table["input_scale"][i]), i, noise)
        ours = state.step(table, i, ours, eps, step_fn, draws)
        scale = float(np.abs(theirs.numpy()).max())
        worst = max(worst, float(np.abs(ours - theirs.numpy()).max()) / scale)
    return worst


@pytest.mark.parametrize("steps", [None, 4, 7, 25])
@pytest.mark.parametrize("name", NAMES)
def test_whole_loop_matches_diffusers(name, steps):
    steps = steps or SPEC.scheduler(name).steps
    assert run_loops(name, steps) < 5e-6


@pytest.mark.parametrize("name", NAMES)
def test_tables_are_plain_json(name):
    import json

    table = S.table(SPEC.scheduler(name), SPEC.scheduler_config)
    again = json.loads(json.dumps(table))
    assert again == table
    n = len(table["timesteps"])
    assert len(table["coeffs"]) == len(table["push"]) == len(table["input_scale"]) == n
    assert all(len(c) == S.NUM_COEFFS for c in table["coeffs"])


def test_pndm_repeats_a_timestep_and_uses_the_saved_sample():
    table = S.table(SPEC.scheduler("pndm"), SPEC.scheduler_config, 10)
    assert len(table["timesteps"]) == 11 and table["timesteps"][1] == table["timesteps"][2]
    assert table["save_cur"][0] and not table["push"][1] and table["coeffs"][1][5] != 0


def test_torch_step_module_is_the_numpy_step():
    rng = np.random.default_rng(0)
    tensors = [rng.standard_normal((1, 4, 8, 8)).astype("float32") for _ in range(6)]
    coeffs = rng.standard_normal(S.NUM_COEFFS).astype("float32")
    module = S.step_module()
    with torch.no_grad():
        prev, stored = module(*[torch.from_numpy(t) for t in tensors], torch.from_numpy(coeffs))
    want_prev, want_stored = S.step_numpy(*tensors, coeffs)
    np.testing.assert_allclose(prev.numpy(), want_prev, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(stored.numpy(), want_stored, rtol=1e-5, atol=1e-6)


def test_a_wrong_coefficient_is_caught():
    """The loop comparison is not vacuous: one perturbed coefficient breaks it."""

    def off_by_a_bit(sample, eps, h1, h2, h3, cur, c):
        c = c.copy()
        c[1] *= 1.01
        return S.step_numpy(sample, eps, h1, h2, h3, cur, c)

    assert run_loops("ddim", 10, off_by_a_bit) > 1e-4
