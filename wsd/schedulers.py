"""Schedulers as one linear multistep step function plus a table of constants per sampler.

With the settings SD uses (eta 0, no churn, no thresholding), every step of DDIM, Euler,
PNDM (PLMS) and DPM-Solver++ 2M is linear in the current sample, the model output, up to
three stored history values and one saved sample, whether the UNet predicts the noise
(epsilon, SD 1.x/XL) or the velocity (v_prediction, SD 2.x 768):

    prev   = c0*sample + c1*eps + c2*h1 + c3*h2 + c4*h3 + c5*cur
    stored = c6*sample + c7*eps            (pushed onto the history when `push`)

so one Relax function (`scheduler_step`) serves them all and each sampler is a JSON table
of per-step coefficients. The stochastic samplers (Euler Ancestral, LCM) add fresh standard
normal noise on some steps: the table's `noise` flags say which, the loop puts that step's
noise in history slot 1 and c2 scales it (their history is otherwise unused). The tables are
computed here from diffusers' own scheduler objects after `set_timesteps` (their timesteps,
sigmas and alphas_cumprod); tests run whole denoising loops against diffusers' `step`.
"""

from __future__ import annotations

import inspect
import json
import math

import numpy as np

from wsd.models.spec import Scheduler

NUM_COEFFS = 8
HISTORY = 3


# StableDiffusionPipeline.__init__ (not SDXL's) rewrites an outdated steps_offset to 1 in the config it
# holds, before any user makes a sampler from it (a deprecation shim of diffusers): what its users get.
PIPELINE_SHIMS = {
    "StableDiffusionPipeline": {"steps_offset": 1},
    "StableDiffusionInpaintPipeline": {"steps_offset": 1, "skip_prk_steps": True},
}


def make_scheduler(spec: Scheduler, base_config: dict, pipeline: str = ""):
    """A sampler exactly as diffusers users make one: the folder's scheduler loaded by its own
    class (as `from_pretrained` does, which remembers which keys were only that class's
    defaults), as `pipeline`'s __init__ leaves it, then `Sampler.from_config(pipe.scheduler.config,
    **overrides)`. diffusers drops the remembered defaults there, so a key SD 1.5's published
    config never wrote (timestep_spacing) takes the new sampler's own default, not PNDM's."""
    import diffusers

    own = getattr(diffusers, str(base_config.get("_class_name")), None)
    if not (isinstance(own, type) and hasattr(own, "from_config")):
        raise ValueError(f"the scheduler config's _class_name {base_config.get('_class_name')!r} is no diffusers class")
    config = dict(own.from_config(dict(base_config)).config)  # keeps _use_default_values, as the pipeline's does
    for key, value in PIPELINE_SHIMS.get(pipeline, {}).items():
        if config.get(key, value) != value:
            config[key] = value  # _use_default_values untouched, as diffusers leaves it
    return getattr(diffusers, spec.class_name).from_config(config, **spec.overrides)


def _f(x) -> float:
    return float(x.item() if hasattr(x, "item") else x)


PREDICTION_TYPES = ("epsilon", "v_prediction")


def prediction_type(s) -> str:
    """What the UNet's output is, as the sampler's config says (diffusers' default: epsilon)."""
    kind = s.config.get("prediction_type", "epsilon")
    if kind not in PREDICTION_TYPES:
        raise ValueError(f"prediction_type {kind!r} has no table; supported: {', '.join(PREDICTION_TYPES)}")
    return kind


def _x0_eps(a_t: float, kind: str):
    """The clean sample and the noise as linear forms (of sample, output) at alphas_cumprod a_t,
    for a variance-preserving sample: x0 = p*x + q*out, eps = r*x + s*out. The v forms never
    divide by a_t, so a zero terminal SNR (a_t = 0, rescale_betas_zero_snr) stays finite."""
    root_a, root_b = math.sqrt(a_t), math.sqrt(1 - a_t)
    if kind == "v_prediction":
        return (root_a, -root_b), (root_b, root_a)
    return (1 / root_a, -root_b / root_a), (0.0, 1.0)


def _ddim(s, n, begin=0):
    acp = s.alphas_cumprod.double().numpy()
    stride = s.config.num_train_timesteps // n
    kind = prediction_type(s)
    rows = []
    for t in s.timesteps.numpy()[begin:]:
        prev = int(t) - stride
        a_prev = acp[prev] if prev >= 0 else _f(s.final_alpha_cumprod)
        (p, q), (r, e) = _x0_eps(acp[int(t)], kind)
        # prev = sqrt(a_prev) * x0 + sqrt(1 - a_prev) * eps  (eta 0)
        keep, noise = math.sqrt(a_prev), math.sqrt(1 - a_prev)
        rows.append(dict(c=[keep * p + noise * r, keep * q + noise * e, 0, 0, 0, 0, 0, 0]))
    return rows


def _euler_update(sigma: float, dt: float, v: bool) -> list[float]:
    """(c0, c1) of prev = sample + (sample - x0) / sigma * dt, where x0 = sample - sigma * out, or
    sample / (sigma^2 + 1) - out * sigma / sqrt(sigma^2 + 1) for a v UNet."""
    if v:
        return [1 + dt * sigma / (sigma**2 + 1), dt / math.sqrt(sigma**2 + 1)]
    return [1, dt]


def _euler(s, n, begin=0):
    sigmas = s.sigmas.double().numpy()
    v = prediction_type(s) == "v_prediction"
    rows = []
    for i in range(begin, len(s.timesteps)):
        sigma, dt = sigmas[i], sigmas[i + 1] - sigmas[i]
        rows.append(dict(c=[*_euler_update(sigma, dt, v), 0, 0, 0, 0, 0, 0], scale=1 / math.sqrt(sigma**2 + 1)))
    return rows


def _dpm_solver_pp(s, n, begin=0):
    """DPM-Solver++ 2M (midpoint): history holds the previous x0 predictions. A loop that starts at
    `begin` (img2img) has no previous prediction there: that step is first order."""
    cfg = s.config
    if cfg.algorithm_type != "dpmsolver++" or cfg.solver_order != 2 or cfg.solver_type != "midpoint":
        raise ValueError("only DPM-Solver++ 2M (midpoint) has a table")
    sigmas = s.sigmas.double().numpy()
    v = prediction_type(s) == "v_prediction"

    def alpha_sigma(sig):
        alpha = 1 / math.sqrt(sig**2 + 1)
        return alpha, sig * alpha

    def lam(sig):
        alpha, sigma = alpha_sigma(sig)
        return math.log(alpha) - math.log(sigma) if sigma > 0 else math.inf

    steps = len(s.timesteps)
    rows = []
    for i in range(begin, steps):
        alpha_s0, sigma_s0 = alpha_sigma(sigmas[i])
        alpha_t, sigma_t = alpha_sigma(sigmas[i + 1])
        # x0 = (x - sigma_s0 * eps) / alpha_s0, or alpha_s0 * x - sigma_s0 * v
        to_x0 = (alpha_s0, -sigma_s0) if v else (1 / alpha_s0, -sigma_s0 / alpha_s0)
        last = i == steps - 1
        first_order = i == begin or (
            last and (cfg.euler_at_final or (cfg.lower_order_final and steps < 15) or cfg.final_sigmas_type == "zero")
        )
        h = lam(sigmas[i + 1]) - lam(sigmas[i])
        a = alpha_t * (math.exp(-h) - 1)  # exp(-inf) = 0 at a final sigma of zero
        c_x = sigma_t / sigma_s0
        if first_order:
            c_m0, c_m1 = -a, 0.0
        else:
            r0 = (lam(sigmas[i]) - lam(sigmas[i - 1])) / h
            c_m0, c_m1 = -a * (1 + 0.5 / r0), a * 0.5 / r0
        rows.append(dict(c=[c_x + c_m0 * to_x0[0], c_m0 * to_x0[1], c_m1, 0, 0, 0, *to_x0]))
    return rows


def _pndm(s, n, begin=0):
    """PLMS with skip_prk_steps, including its repeated second timestep and saved sample. The
    history holds the raw outputs; with v_prediction diffusers turns their mix into an epsilon
    (sqrt(a_t) * mix + sqrt(1 - a_t) * sample) just before the update, and so does the table.
    Started at `begin` (img2img), its counters start from zero there, as diffusers' do."""
    if not s.config.skip_prk_steps:
        raise ValueError("PNDM tables need skip_prk_steps=True (SD's setting)")
    v = prediction_type(s) == "v_prediction"
    acp = s.alphas_cumprod.double().numpy()
    final = _f(s.final_alpha_cumprod)
    stride = s.config.num_train_timesteps // n
    rows, ets, counter = [], 0, 0
    for t in (int(x) for x in s.timesteps.numpy()[begin:]):
        prev_t = t - stride
        push = counter != 1
        if push:
            ets = min(ets, 3) + 1
        else:
            prev_t, t = t, t + stride
        use_cur = False
        if ets == 1 and counter == 0:
            mix = [1, 0, 0, 0]
        elif ets == 1 and counter == 1:
            mix, use_cur = [0.5, 0.5, 0, 0], True
        elif ets == 2:
            mix = [1.5, -0.5, 0, 0]
        elif ets == 3:
            mix = [23 / 12, -16 / 12, 5 / 12, 0]
        else:
            mix = [55 / 24, -59 / 24, 37 / 24, -9 / 24]
        a_t, a_prev = acp[t], (acp[prev_t] if prev_t >= 0 else final)
        sample_coeff = math.sqrt(a_prev / a_t)
        denom = a_t * math.sqrt(1 - a_prev) + math.sqrt(a_t * (1 - a_t) * a_prev)
        k = -(a_prev - a_t) / denom
        on_sample, on_mix = (sample_coeff + k * math.sqrt(1 - a_t), k * math.sqrt(a_t)) if v else (sample_coeff, k)
        c = [
            0 if use_cur else on_sample,
            on_mix * mix[0],
            on_mix * mix[1],
            on_mix * mix[2],
            on_mix * mix[3],
            on_sample if use_cur else 0,
            0,
            1,
        ]
        rows.append(dict(c=c, push=push, save_cur=counter == 0))
        counter += 1
    return rows


def _euler_ancestral(s, n, begin=0):
    """Euler Ancestral: the Euler step to sigma_down, then noise * sigma_up (drawn on every step,
    the last one too, where sigma_up is 0: diffusers draws it all the same)."""
    sigmas = s.sigmas.double().numpy()
    v = prediction_type(s) == "v_prediction"
    rows = []
    for i in range(begin, len(s.timesteps)):
        sigma, nxt = sigmas[i], sigmas[i + 1]
        up = math.sqrt(nxt**2 * (sigma**2 - nxt**2) / sigma**2)
        dt = math.sqrt(nxt**2 - up**2) - sigma
        rows.append(
            dict(
                c=[*_euler_update(sigma, dt, v), up, 0, 0, 0, 0, 0],
                scale=1 / math.sqrt(sigma**2 + 1),
                push=False,
                noise=True,
            )
        )
    return rows


def _lcm(s, n, begin=0):
    """LCM's consistency step: denoised = c_out * x0 + c_skip * sample, then (but on the last step)
    sqrt(a_prev) * denoised + sqrt(1 - a_prev) * noise."""
    acp = s.alphas_cumprod.double().numpy()
    kind = prediction_type(s)
    steps = [int(t) for t in s.timesteps.numpy()]
    rows = []
    for i, t in enumerate(steps[begin:], start=begin):
        last = i == len(steps) - 1
        prev = t if last else steps[i + 1]
        a_prev = acp[prev] if prev >= 0 else _f(s.final_alpha_cumprod)
        c_skip, c_out = (float(x) for x in s.get_scalings_for_boundary_condition_discrete(t))
        (p, q), _ = _x0_eps(acp[t], kind)
        keep, noise = (1.0, 0.0) if last else (math.sqrt(a_prev), math.sqrt(1 - a_prev))
        c = [keep * (c_out * p + c_skip), keep * c_out * q, noise, 0, 0, 0, 0, 0]
        rows.append(dict(c=c, push=False, noise=not last))
    return rows


TABLE_BUILDERS = {
    "DDIMScheduler": _ddim,
    "EulerDiscreteScheduler": _euler,
    "DPMSolverMultistepScheduler": _dpm_solver_pp,
    "PNDMScheduler": _pndm,
    "EulerAncestralDiscreteScheduler": _euler_ancestral,
    "LCMScheduler": _lcm,
}


# Step counts the build writes a table for (the page's steps choices); 1 is SD-Turbo's.
STEP_CHOICES = (1, 2, 4, 8, 10, 15, 20, 25, 30, 40, 50)


def _row_fields(rows) -> dict:
    """The per-row fields of a table (or of a restart's rows)."""
    return {
        "input_scale": [float(r.get("scale", 1.0)) for r in rows],
        "coeffs": [[float(v) for v in r["c"]] for r in rows],
        "push": [bool(r.get("push", True)) for r in rows],
        "save_cur": [bool(r.get("save_cur", False)) for r in rows],
        # steps that take fresh standard normal noise in history slot 1 (the stochastic samplers)
        "noise": [bool(r.get("noise", False)) for r in rows],
    }


def _add_noise(sched) -> list[list[float]]:
    """Per row i: (a, b) with a*x0 + b*noise = the sampler's own `add_noise` at timestep i, as
    diffusers' img2img pipelines call it after `set_begin_index(i)` (sigma-based samplers read the
    begin index; the others the timestep)."""
    import torch

    one, zero = torch.ones(1), torch.zeros(1)
    out = []
    for i in range(len(sched.timesteps)):
        if hasattr(sched, "set_begin_index"):
            sched.set_begin_index(i)
        t = sched.timesteps[i : i + 1]
        out.append([_f(sched.add_noise(one, zero, t)[0]), _f(sched.add_noise(zero, one, t)[0])])
    return out


def _restarts(build, sched, steps: int, rows: list) -> dict:
    """Where a loop started at row b (img2img) is not simply rows[b:] (DPM-Solver++'s first step is
    first order, PNDM's counters restart): the rows that differ, as a prefix to use instead."""
    out = {}
    for b in range(1, len(rows)):
        fresh, tail = build(sched, steps, b), rows[b:]
        differ = [k for k, (x, y) in enumerate(zip(fresh, tail, strict=True)) if x != y]
        if differ:
            out[str(b)] = _row_fields(fresh[: differ[-1] + 1])
    return out


def table(spec: Scheduler, base_config: dict, steps: int | None = None, pipeline: str = "") -> dict:
    """The JSON the page loads for one sampler: timesteps and per-step coefficients, and what an
    image-to-image loop needs to start at any row (`add_noise`, `restarts`; see `from_step`)."""
    steps = steps or spec.steps
    sched = make_scheduler(spec, base_config, pipeline)
    sched.set_timesteps(steps)
    if spec.class_name == "PNDMScheduler":
        sched.set_timesteps(steps)  # PNDM keeps counters; a clean state either way
    build = TABLE_BUILDERS[spec.class_name]
    rows = build(sched, steps)
    return {
        "name": spec.name,
        "class": spec.class_name,
        "num_inference_steps": steps,
        "timesteps": [float(t) for t in sched.timesteps.numpy()],
        "init_noise_sigma": _f(sched.init_noise_sigma),
        **_row_fields(rows),
        "history": HISTORY,
        "add_noise": _add_noise(sched),
        "restarts": _restarts(build, sched, steps, rows),
    }


ROW_FIELDS = ("input_scale", "coeffs", "push", "save_cur", "noise")


def begin_for_strength(steps: int, strength: float) -> int:
    """The row an image-to-image loop of `steps` starts at, as diffusers' img2img pipelines compute
    it (get_timesteps; every sampler here has order 1); a strength that leaves no step is refused."""
    if not 0 < strength <= 1:
        raise ValueError(f"strength {strength} must be in (0, 1]")
    init = min(int(steps * strength), steps)
    if init < 1:
        raise ValueError(f"strength {strength} leaves no denoising step of {steps}: use at least {1 / steps:g}")
    return max(steps - init, 0)


def from_step(tbl: dict, begin: int) -> dict:
    """The table of a loop that starts at row `begin` (img2img): the rows from there, with the
    restart's own rows first where starting there changes them. `add_noise` becomes that row's
    (a, b), which make the starting latents from the clean ones (web/lib/pipeline.js fromStep)."""
    if "add_noise" not in tbl:  # a table written before img2img: fine for text-to-image only
        if begin == 0:
            return tbl
        name = tbl.get("name")
        raise ValueError(f"sampler {name} has no add_noise rows (an older build); rebuild the model for img2img")
    out = {**tbl, "timesteps": tbl["timesteps"][begin:], "add_noise": tbl["add_noise"][begin], "restarts": {}}
    restart = tbl.get("restarts", {}).get(str(begin), {})
    for key in ROW_FIELDS:
        if key in tbl:
            head = restart.get(key, [])
            out[key] = [*head, *tbl[key][begin + len(head) :]]
    return out


# How close a table's loop must stay to diffusers' own `step` loop (relative to the sample's scale):
# fp32 tables of linear updates measure ~1e-7 on every published config shape
# (tests/test_wsd/test_scheduler_configs.py).
REPRODUCE_REL = 1e-5


def require_reproducible(specs, base_config: dict, pipeline: str = "", steps: int = 4) -> None:
    """Each sampler's table reproduces diffusers' own loop for this folder's scheduler config, or a
    named error: the page would otherwise sample with a different sampler than the folder's."""
    from wsd.errors import ModelFolderError

    def refuse(spec, what: str):
        return ModelFolderError(
            f"scheduler/scheduler_config.json: sampler {spec.name} ({spec.class_name}) cannot be reproduced for "
            f"this config ({what}); config: {json.dumps(base_config, sort_keys=True)}"
        )

    for spec in specs:
        try:
            tbl = table(spec, base_config, steps, pipeline)
            errors = {begin: _loop_vs_diffusers(spec, tbl, base_config, pipeline, steps, begin) for begin in (None, 1)}
        except Exception as exc:  # noqa: BLE001 (diffusers and the table builders raise many kinds)
            raise refuse(spec, f"{type(exc).__name__}: {exc}") from None
        for begin, worst in errors.items():
            loop = f"its {steps}-step loop" + ("" if begin is None else f" started at step {begin} (img2img)")
            if worst is None:
                raise refuse(spec, "its timesteps differ from diffusers' own step")
            if worst > REPRODUCE_REL:
                raise refuse(spec, f"{loop} is {worst:.1e} off from diffusers' own step")


def _loop_vs_diffusers(spec, tbl, base_config, pipeline, steps, begin):
    """The table's loop against diffusers' own, over a stand-in model that reads its scaled input:
    from pure noise (`begin` None, text-to-image) or from a noised clean sample at row `begin`, as
    the img2img pipelines start (set_begin_index, add_noise). The worst error, None if the
    timesteps differ."""
    import torch

    sched = make_scheduler(spec, base_config, pipeline)
    sched.set_timesteps(steps)
    if not np.array_equal(np.asarray(tbl["timesteps"]), sched.timesteps.numpy().astype("float64")):
        return None
    rng = np.random.default_rng(0)
    start = rng.standard_normal((1, 4, 8, 8)).astype("float32")
    timesteps = sched.timesteps
    if begin is None:
        ours, theirs = start * np.float32(tbl["init_noise_sigma"]), torch.from_numpy(start) * sched.init_noise_sigma
    else:
        tbl, timesteps = from_step(tbl, begin), timesteps[begin:]
        if hasattr(sched, "set_begin_index"):
            sched.set_begin_index(begin)
        noise = rng.standard_normal(start.shape).astype("float32")
        theirs = sched.add_noise(torch.from_numpy(start), torch.from_numpy(noise), timesteps[:1])
        a, b = (np.float32(c) for c in tbl["add_noise"])
        ours = (a * start + b * noise).astype("float32")
    state, worst, scale = LoopState(ours), 0.0, float(np.abs(theirs.numpy()).max())
    draws = TwinDraws(sched, 0, start.shape)
    for i, t in enumerate(timesteps):
        eps = rng.standard_normal(start.shape).astype("float32")
        model_input = torch.from_numpy(eps) + 0.1 * sched.scale_model_input(theirs, t)
        theirs = sched.step(model_input, t, theirs, **draws.step_kwargs).prev_sample
        model_output = eps + np.float32(0.1 * tbl["input_scale"][i]) * ours
        ours = state.step(tbl, i, ours, model_output.astype("float32"), step_numpy, draws)
        scale = max(scale, float(np.abs(theirs.numpy()).max()))
        worst = max(worst, loop_error(ours, theirs.numpy(), scale))
    return worst


class TwinDraws:
    """A generator for diffusers' `step` (as a pipeline hands the samplers whose step takes one) and
    its twin as a loop's noise source: the same draws, ours taken on the steps the table marks
    `noise`, so a table that marks the wrong steps falls out of step with diffusers."""

    def __init__(self, sched, seed: int, shape):
        import torch

        takes = "generator" in inspect.signature(sched.step).parameters
        self.step_kwargs = {"generator": torch.Generator().manual_seed(seed)} if takes else {}
        self._twin, self._shape = torch.Generator().manual_seed(seed), tuple(shape)

    def __call__(self, i: int):
        import torch

        return torch.randn(self._shape, generator=self._twin).numpy()


def loop_error(ours, theirs, scale: float) -> float:
    """How far a loop is from diffusers' fp32 one, relative to the largest sample the loop has held:
    float32 rounding is relative to the largest operand, and diffusers' own steps cancel large terms
    (Euler at a zero-SNR sigma of 4096 leaves a sample of ~1 with ~1e-4 of rounding in it)."""
    return float(np.abs(ours - theirs).max() / max(scale, 1e-12))


class LoopState:
    """The page's loop bookkeeping, in Python: history shifting and the saved sample."""

    def __init__(self, sample: np.ndarray):
        zeros = np.zeros_like(sample)
        self.history = [zeros] * HISTORY
        self.cur = zeros

    def step(self, tbl: dict, i: int, sample, eps, step_fn, noise=None):
        """`noise(i)`: step i's fresh standard normal, asked for only on the steps the table marks."""
        if tbl["save_cur"][i]:
            self.cur = sample
        if tbl.get("noise") and tbl["noise"][i]:
            if noise is None:
                raise ValueError(f"step {i} of {tbl['name']} takes fresh noise and none was given")
            self.history = [noise(i), *self.history[1:]]
        prev, stored = step_fn(sample, eps, *self.history, self.cur, np.asarray(tbl["coeffs"][i], "float32"))
        if tbl["push"][i]:
            self.history = [stored, *self.history[:-1]]
        return prev


def step_numpy(sample, eps, h1, h2, h3, cur, c):
    prev = c[0] * sample + c[1] * eps + c[2] * h1 + c[3] * h2 + c[4] * h3 + c[5] * cur
    return prev.astype(sample.dtype), (c[6] * sample + c[7] * eps).astype(sample.dtype)


def step_module():
    """The torch form of the step, captured into the Relax function `scheduler_step`."""
    import torch

    class SchedulerStep(torch.nn.Module):
        def forward(self, sample, model_output, h1, h2, h3, cur, coeffs):
            # Stacked and contracted rather than six scaled adds: fused, those make one kernel
            # with 13 storage buffers, over the 10 a WebGPU device is asked for.
            operands = torch.stack([sample, model_output, h1, h2, h3, cur])
            prev = torch.tensordot(coeffs[:6], operands, dims=1)
            stored = torch.tensordot(coeffs[6:], operands[:2], dims=1)
            return prev, stored

    return SchedulerStep().eval()


def scale_module():
    import torch

    class ScaleModelInput(torch.nn.Module):
        def forward(self, sample, scale):
            return sample * scale

    return ScaleModelInput().eval()


def check_table(table, name: str) -> dict:
    """A sampler table as the loop reads it, or a one-line WsdError naming the file and the field
    (the page's web/lib/validate.js checks the same in JavaScript)."""
    from wsd.errors import WsdError

    def need(ok: bool, what: str) -> None:
        if not ok:
            raise WsdError(f"{name}: {what}; rebuild the model with `wsd build`")

    def number(x) -> bool:
        return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)

    need(isinstance(table, dict), "not a JSON object")
    steps = table.get("timesteps")
    need(isinstance(steps, list) and len(steps) > 0 and all(map(number, steps)), '"timesteps" must be numbers')
    n = len(steps)
    coeffs = table.get("coeffs")
    need(
        isinstance(coeffs, list)
        and len(coeffs) == n
        and all(isinstance(r, list) and len(r) == NUM_COEFFS and all(map(number, r)) for r in coeffs),
        f'"coeffs" must be {n} rows of {NUM_COEFFS} numbers',
    )
    for key in ("push", "save_cur", *(("noise",) if "noise" in table else ())):
        v = table.get(key)
        need(
            isinstance(v, list) and len(v) == n and all(isinstance(b, bool) for b in v), f'"{key}" must be {n} booleans'
        )
    scale = table.get("input_scale")
    need(isinstance(scale, list) and len(scale) == n and all(map(number, scale)), f'"input_scale" must be {n} numbers')
    sigma = table.get("init_noise_sigma")
    need(number(sigma) and sigma > 0, '"init_noise_sigma" must be a positive number')
    add_noise = table.get("add_noise")
    pairs = isinstance(add_noise, list) and len(add_noise) == n
    pairs = pairs and all(isinstance(r, list) and len(r) == 2 and all(map(number, r)) for r in add_noise)
    need(add_noise is None or pairs, f'"add_noise" must be {n} pairs of numbers')
    need(isinstance(table.get("restarts", {}), dict), '"restarts" must be an object')
    history = table.get("history")
    need(
        isinstance(history, int) and not isinstance(history, bool) and 0 <= history <= HISTORY, '"history" must be 0..3'
    )
    return table
