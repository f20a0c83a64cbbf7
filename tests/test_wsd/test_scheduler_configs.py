"""Scheduler configs as users have them: every sampler's compiled table against diffusers' documented
recipe (`Sampler.from_config(pipe.scheduler.config)`, the folder's scheduler loaded by
`from_pretrained`), over the shapes published folders come in. Timesteps exactly; a 4-step loop
within 5e-6 of the sample's scale. Issue 33: keys SD 1.5's file omits (timestep_spacing) took
PNDM's default instead of the sampler's, 25-32 dB off in the image."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conformance.reference import SAMPLERS
from wsd import models
from wsd import schedulers as S
from wsd.errors import ModelFolderError

# SD 1.5's published scheduler_config.json (runwayml/stable-diffusion-v1-5): no timestep_spacing.
SD15 = {
    "_class_name": "PNDMScheduler",
    "_diffusers_version": "0.6.0",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "trained_betas": None,
    "clip_sample": False,
}
CONFIGS = {
    "sd15-published": SD15,
    # SD 2.x base-style: prediction_type written out, still no spacing
    "sd2-base-style": {**SD15, "_diffusers_version": "0.8.0", "prediction_type": "epsilon"},
    "sd2-ddim-style": {**SD15, "_class_name": "DDIMScheduler", "prediction_type": "epsilon"},
    # SDXL base 1.0's: Euler with every key stated
    "sdxl-published": models.get("sdxl").scheduler_config,
    "leading": {**SD15, "timestep_spacing": "leading"},
    "trailing": {**SD15, "timestep_spacing": "trailing"},
    "linspace": {**SD15, "timestep_spacing": "linspace"},
    "steps-offset-0": {**SD15, "steps_offset": 0},  # StableDiffusionPipeline rewrites it to 1
    "no-steps-offset": {k: v for k, v in SD15.items() if k != "steps_offset"},
    "leading-no-steps-offset": {k: v for k, v in SD15.items() if k != "steps_offset"} | {"timestep_spacing": "leading"},
    "set-alpha-to-one": {**SD15, "set_alpha_to_one": True},
    "euler-karras": {**SD15, "_class_name": "EulerDiscreteScheduler", "use_karras_sigmas": True},
    "dpm-karras": {**SD15, "_class_name": "DPMSolverMultistepScheduler", "use_karras_sigmas": True},
    # SD 2.1 768's published: DDIM predicting the velocity
    "sd2-v": {
        **SD15,
        "_class_name": "DDIMScheduler",
        "_diffusers_version": "0.10.0",
        "prediction_type": "v_prediction",
    },
    # v-prediction with zero terminal SNR and trailing spacing (the recipe of zero-SNR fine-tunes)
    "v-zero-snr-trailing": {
        **SD15,
        "_class_name": "DDIMScheduler",
        "prediction_type": "v_prediction",
        "rescale_betas_zero_snr": True,
        "timestep_spacing": "trailing",
    },
    "v-euler-karras": {
        **SD15,
        "_class_name": "EulerDiscreteScheduler",
        "prediction_type": "v_prediction",
        "use_karras_sigmas": True,
    },
}
SPEC = models.get("sd15-tiny")


def diffusers_sampler(name: str, config: dict, tmp_path):
    """The recipe diffusers' docs give: the folder's scheduler from_pretrained, held by a
    StableDiffusionPipeline (whose __init__ may rewrite its config), then
    `Sampler.from_config(pipe.scheduler.config)`."""
    import diffusers

    (tmp_path / "scheduler").mkdir(exist_ok=True)
    (tmp_path / "scheduler" / "scheduler_config.json").write_text(json.dumps(config))
    own = getattr(diffusers, config["_class_name"]).from_pretrained(str(tmp_path), subfolder="scheduler")
    none = dict.fromkeys(("vae", "text_encoder", "tokenizer", "unet", "safety_checker", "feature_extractor"))
    pipe = diffusers.StableDiffusionPipeline(**none, scheduler=own, requires_safety_checker=False)
    cls, overrides = SAMPLERS[name]
    return getattr(diffusers, cls).from_config(pipe.scheduler.config, **overrides)


def loop_error(table: dict, sched, steps: int) -> float:
    sched.set_timesteps(steps)
    assert table["timesteps"] == [float(t) for t in sched.timesteps.numpy()]  # exactly
    rng = np.random.default_rng(3)
    start = rng.standard_normal((1, 4, 8, 8)).astype("float32")
    ours, theirs = start * np.float32(table["init_noise_sigma"]), torch.from_numpy(start) * sched.init_noise_sigma
    draws = S.TwinDraws(sched, 5, start.shape)  # the stochastic samplers: the same draws on both sides
    return both_loops(table, sched, sched.timesteps, ours, theirs, rng, draws)


def both_loops(table, sched, timesteps, ours, theirs, rng, draws, worst: float = 0.0) -> float:
    """The table's loop and diffusers' `step` over a stand-in model that reads its scaled input;
    the worst error relative to the largest sample held."""
    state, scale = S.LoopState(ours), float(theirs.abs().max())
    for i, t in enumerate(timesteps):
        eps = rng.standard_normal(ours.shape).astype("float32")
        model_input = torch.from_numpy(eps) + 0.1 * sched.scale_model_input(theirs, t)
        theirs = sched.step(model_input, t, theirs, **draws.step_kwargs).prev_sample
        model_output = eps + np.float32(0.1 * table["input_scale"][i]) * ours
        ours = state.step(table, i, ours, model_output, S.step_numpy, draws)
        scale = max(scale, float(theirs.abs().max()))
        worst = max(worst, S.loop_error(ours, theirs.numpy(), scale))
    return worst


@pytest.mark.parametrize("steps", [1, 4])  # 1: SD-Turbo's
@pytest.mark.parametrize("name", sorted(SAMPLERS))
@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_the_table_is_the_diffusers_recipe(config, name, steps, tmp_path):
    table = S.table(SPEC.scheduler(name), CONFIGS[config], steps, SPEC.pipeline_class)
    assert loop_error(table, diffusers_sampler(name, CONFIGS[config], tmp_path), steps) < 5e-6


def img2img_error(table: dict, sched, steps: int, strength: float) -> float:
    """The table started where `strength` says against the loop diffusers' img2img pipelines run:
    get_timesteps' start, set_begin_index, add_noise at the first remaining timestep, then step."""
    sched.set_timesteps(steps)
    init = min(int(steps * strength), steps)
    begin = max(steps - init, 0)
    timesteps = sched.timesteps[begin * sched.order :]
    if hasattr(sched, "set_begin_index"):
        sched.set_begin_index(begin * sched.order)
    rng = np.random.default_rng(4)
    clean, noise = (rng.standard_normal((1, 4, 8, 8)).astype("float32") for _ in range(2))
    theirs = sched.add_noise(torch.from_numpy(clean), torch.from_numpy(noise), timesteps[:1])
    started = S.from_step(table, S.begin_for_strength(steps, strength))
    assert started["timesteps"] == [float(t) for t in timesteps.numpy()]
    a, b = (np.float32(c) for c in started["add_noise"])
    ours = (a * clean + b * noise).astype("float32")
    start_error = S.loop_error(ours, theirs.numpy(), 1.0)
    return both_loops(started, sched, timesteps, ours, theirs, rng, S.TwinDraws(sched, 6, clean.shape), start_error)


@pytest.mark.parametrize("name", sorted(SAMPLERS))
@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_img2img_starts_where_diffusers_does_at_every_strength(config, name, tmp_path):
    """Every start row of a 10-step table (strength 0.1 .. 1.0), restarts included."""
    table = S.table(SPEC.scheduler(name), CONFIGS[config], 10, SPEC.pipeline_class)
    sched = diffusers_sampler(name, CONFIGS[config], tmp_path)
    worst = max(img2img_error(table, sched, 10, k / 10) for k in range(1, 11))
    assert worst < 5e-6


def test_a_strength_that_leaves_no_step_is_refused():
    with pytest.raises(ValueError, match="leaves no denoising step of 4: use at least 0.25"):
        S.begin_for_strength(4, 0.2)
    with pytest.raises(ValueError, match=r"must be in \(0, 1\]"):
        S.begin_for_strength(4, 1.5)
    assert [S.begin_for_strength(4, s) for s in (0.25, 0.5, 0.6, 0.75, 1.0)] == [3, 2, 2, 1, 0]


def test_the_page_starts_img2img_as_the_native_loop_does():
    """pipeline.js's beginForStrength and fromStep (node) against wsd/schedulers.py, on PNDM's and
    DPM-Solver++'s tables (the two with restarts)."""
    from wsd import pagejs

    config = CONFIGS[sorted(CONFIGS)[0]]
    for name in ("pndm", "dpm-solver++", "euler-a"):
        table = S.table(SPEC.scheduler(name), config, 10, SPEC.pipeline_class)
        for strength in (0.1, 0.35, 0.5, 0.99, 1.0):
            begin = pagejs.call("pipeline.js", "beginForStrength", 10, strength)
            assert begin == S.begin_for_strength(10, strength)
            assert pagejs.call("pipeline.js", "fromStep", table, begin) == json.loads(
                json.dumps(S.from_step(table, begin))
            )


def test_sd15_style_configs_give_dpm_solver_its_own_spacing(tmp_path):
    """The incident itself: linspace (DPM-Solver++'s default), not PNDM's leading."""
    table = S.table(SPEC.scheduler("dpm-solver++"), SD15, 4)
    assert table["timesteps"] == [999.0, 749.0, 500.0, 250.0]
    assert S.table(SPEC.scheduler("pndm"), SD15, 4)["timesteps"][0] == 751.0  # PNDM keeps its leading


@pytest.mark.parametrize(
    ("config", "why"),
    [
        # DPM-Solver++ with the Heun solver: the tables hold 2M midpoint only
        ({**SD15, "_class_name": "DPMSolverMultistepScheduler", "solver_type": "heun"}, "midpoint"),
        # zero-SNR betas with an epsilon UNet: the last alpha is 0, where an epsilon says nothing of x0
        ({**SD15, "rescale_betas_zero_snr": True, "timestep_spacing": "trailing"}, "ZeroDivisionError"),
        # a UNet predicting the clean sample: no table is derived for it
        ({**SD15, "prediction_type": "sample"}, "prediction_type 'sample' has no table"),
    ],
)
def test_a_published_config_the_tables_cannot_follow_is_refused_by_name(config, why):
    with pytest.raises(ModelFolderError, match=rf"scheduler_config.json: sampler .* cannot be reproduced .*{why}"):
        S.require_reproducible(SPEC.schedulers, config, SPEC.pipeline_class)


def test_a_config_the_tables_cannot_reproduce_is_refused_by_name(monkeypatch):
    # a table builder that gets one step wrong, as a diffusers change the tables miss would
    wrong = S.TABLE_BUILDERS["EulerDiscreteScheduler"]

    def off(s, n):
        rows = wrong(s, n)
        rows[1]["c"][1] *= 1.01
        return rows

    monkeypatch.setitem(S.TABLE_BUILDERS, "EulerDiscreteScheduler", off)
    S.require_reproducible([SPEC.scheduler("ddim")], SD15)  # the others are unaffected
    with pytest.raises(ModelFolderError, match=r"sampler euler \(EulerDiscreteScheduler\) cannot be reproduced"):
        S.require_reproducible(SPEC.schedulers, SD15)


GATED_SHAPES = (
    "trailing",
    "steps-offset-0",
    "leading-no-steps-offset",
    "set-alpha-to-one",
    "euler-karras",
    "v-zero-snr-trailing",
)


@pytest.fixture(scope="module")
def sd15_folder():
    from wsd.build import random_folder

    return random_folder(SPEC, 0, echo=lambda *_: None)


@pytest.mark.parametrize("shape", GATED_SHAPES)
def test_the_gate_s_scheduler_stage_on_a_folder_with_this_config(shape, sd15_folder, tmp_path):
    """The scheduler stage through the harness (the compiled step, the build's tables) on a copy of
    sd15-tiny's folder carrying this config, against diffusers loading that folder."""
    import shutil

    from conformance.harness import Harness
    from conformance.stages import all_cases
    from wsd.build import BuildOptions, build

    folder = tmp_path / "folder"
    shutil.copytree(sd15_folder, folder)
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps(CONFIGS[shape]))
    opts = BuildOptions(None, weights=str(folder), target="llvm", entries=("scheduler_step", "scale_model_input"))
    dist = build(opts, tmp_path / "dist", echo=lambda *_: None, progress=False).out
    h = Harness(
        weights=folder, backends=("native",), dists={"native": dist}, out_dir=tmp_path / "r", echo=lambda *_: None
    )
    rows = [h.run(c, "native") for c in all_cases(h.model, "sd15") if c.stage.name == "scheduler"]
    assert len(rows) == len(SAMPLERS)
    assert all(r["status"] == "pass" for r in rows), [(r["stage"], r["message"]) for r in rows]


def test_a_table_without_img2img_rows_says_to_rebuild():
    """A dist built before img2img has no add_noise rows: text-to-image still runs, img2img is refused
    as the page refuses it (pipeline.js fromStep), not with a KeyError."""
    old = {"name": "pndm", "timesteps": [999.0, 500.0], "coeffs": [[1.0], [1.0]]}
    assert S.from_step(old, 0) is old
    with pytest.raises(ValueError, match="no add_noise rows .*rebuild the model for img2img"):
        S.from_step(old, 1)
