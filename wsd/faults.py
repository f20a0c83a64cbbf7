"""Compiler faults injected on purpose, so the harness can prove it catches them.

`wsd build --inject dropped-bias@clip` builds a module in which one kernel of the `clip`
entry point forgets its bias add, as a codegen bug would: same kernel name, same
signature, wrong numbers. Only the harness's self-test and its `--inject` option use it.
"""

from __future__ import annotations

import contextlib
import re

from wsd.errors import BuildError
from wsd.kernels import CALLED
from wsd.passes.ir import is_prim_func, param_buffers
from wsd.passes.pipeline import Step

# Faults in what is captured, as a wrong port of diffusers' conditioning would be: an attribute
# of the entry's torch wrapper set to the wrong value (SDXL's text entry, wsd/entries.py).
CAPTURE_FAULTS = {
    "last-hidden-state": ("hidden_layer", -1),  # the encoders' last hidden state, not the penultimate
    "pooled-from-first-encoder": (
        "pooled_from",
        0,
    ),  # pooled embeddings from the first encoder, not the second's projection
    "mask-inverted": ("repaint", False),  # an inpainting UNet given 1 - mask: it repaints what to keep
    "lcm-guidance-unshifted": ("offset", 0.0),  # LCM's guidance embedded as g, not g - 1
}
# Faults in the product's Python helpers, the code the gate's references shared until they
# were made independent (conformance/reference): each patch swaps one helper for the buggy
# version a real port would have had, for as long as `shared_code` is entered (the build, or a
# whole self-test run of the gate). name -> (module, attribute, what it becomes).
SHARED_CODE_FAULTS = {
    # sampler config merged the old way: the folder class's defaults leak into the new sampler
    "sampler-defaults": ("wsd.schedulers", "make_scheduler", "_merged_with_own_defaults"),
    # classifier-free guidance with the UNet's two halves read in the wrong order
    "cfg-swapped": ("wsd.entries", "guided", "_guided_swapped"),
    # SDXL's add_time_ids from the latents' size instead of the image's
    "time-ids-of-latents": ("wsd.generation", "time_ids", "_time_ids_of_latents"),
    # the folder loader drops the scheduler config's steps_offset (timesteps one off)
    "loader-drops-steps-offset": ("wsd.models.folder", "load", "_load_without_steps_offset"),
    # the folder loader reads prediction_type the other way round (epsilon <-> v_prediction)
    "prediction-swapped": ("wsd.models.folder", "load", "_load_with_prediction_swapped"),
}
KINDS = ("dropped-bias", "wrong-guidance-scale", *CAPTURE_FAULTS, *SHARED_CODE_FAULTS)


def parse(spec: str) -> tuple[str, str]:
    kind, _, entry = spec.partition("@")
    if kind not in KINDS or not entry:
        raise BuildError(f"unknown fault {spec!r}; known: {', '.join(k + '@<entry>' for k in KINDS)}")
    return kind, entry


def drop_bias(mod, entry: str, record: dict) -> object:
    """Remove `+ bias[i]` from the first kernel of `entry` (by name) that adds a 1-D parameter."""
    import tvm

    called = set(CALLED.findall(mod[entry].script()))
    for gvar, func in sorted(mod.functions_items(), key=lambda item: item[0].name_hint):
        if gvar.name_hint not in called or not is_prim_func(func):
            continue
        one_d = [buf.name for buf in param_buffers(func) if len(buf.shape) == 1]
        if not one_d:
            continue
        pattern = re.compile(r"= (?:" + "|".join(map(re.escape, one_d)) + r")\[[^\]]*\] \+ ")
        text, hits = pattern.subn("= ", func.script(), count=1)
        if hits:
            mod[gvar] = tvm.script.from_source(text)
            record[f"dropped-bias@{entry}"] = gvar.name_hint
            return mod
    raise BuildError(f"dropped-bias@{entry}: no kernel of {entry} adds a 1-D parameter")


def scale_guidance(mod, entry: str, record: dict) -> object:
    """Guidance applied 10 % too strong: the kernel of `entry` that scales a difference by a scalar
    (CFG's `uncond + g * (cond - uncond)`) reads g * 1.1 instead of g."""
    import tvm

    called = set(CALLED.findall(mod[entry].script()))
    for gvar, func in sorted(mod.functions_items(), key=lambda item: item[0].name_hint):
        if gvar.name_hint not in called or not is_prim_func(func):
            continue
        bufs = param_buffers(func)
        # the guidance scale arrives as a 0-d or (1,) tensor beside the 4-D noise predictions
        scalars = [b.name for b in bufs if len(b.shape) == 0 or (len(b.shape) == 1 and int(b.shape[0]) == 1)]
        script = func.script()
        if not scalars or " - " not in script or not any(len(b.shape) == 4 for b in bufs):
            continue
        pattern = re.compile(r"\b((?:" + "|".join(map(re.escape, scalars)) + r")\[[^\]]*\])")
        lines, hits = [], 0
        for line in script.split("\n"):  # the arithmetic only, not the T.reads/T.writes annotations
            if "=" in line and not line.strip().startswith(("T.reads", "T.writes")):
                line, n = pattern.subn(r"(\1 * T.float32(1.1))", line)
                hits += n
            lines.append(line)
        text = "\n".join(lines)
        if hits:
            mod[gvar] = tvm.script.from_source(text)
            record[f"wrong-guidance-scale@{entry}"] = gvar.name_hint
            return mod
    raise BuildError(f"wrong-guidance-scale@{entry}: no kernel of {entry} scales a difference by a scalar")


REWRITES = {"dropped-bias": drop_bias, "wrong-guidance-scale": scale_guidance}


def with_capture_faults(entries, specs: tuple[str, ...], record: dict) -> list:
    """`entries` with the named capture faults set on their wrappers (the others unchanged)."""
    import dataclasses

    out = list(entries)
    for spec in specs:
        kind, name = parse(spec)
        if kind not in CAPTURE_FAULTS:
            continue
        attr, value = CAPTURE_FAULTS[kind]
        at = next((i for i, e in enumerate(out) if e.name == name), None)
        if at is None:
            raise BuildError(f"{spec}: the build has no entry point {name!r}")

        def faulty(model, make=out[at].wrapper, attr=attr, value=value, spec=spec, name=name):
            module = make(model)
            if not hasattr(module, attr):
                raise BuildError(f"{spec}: the {name} wrapper has no {attr!r} to break (another model kind?)")
            setattr(module, attr, value)
            return module

        out[at] = dataclasses.replace(out[at], wrapper=faulty)
        record[spec] = name  # no kernel to name: the fault is in what was captured
    return out


def steps(specs: tuple[str, ...], record: dict) -> tuple[Step, ...]:
    """Pass-pipeline steps for the named kernel faults (they run just before scheduling)."""
    out = []
    for spec in specs:
        kind, entry = parse(spec)
        if kind not in REWRITES:
            continue

        def make(target, options, entry=entry, kind=kind):
            import tvm

            return tvm.transform.module_pass(
                lambda mod, ctx: REWRITES[kind](mod, entry, record), opt_level=0, name=f"wsd.fault.{kind}"
            )

        out.append(Step(f"fault:{spec}", make, "an injected fault (harness self-test)"))
    return tuple(out)


# --- faults in shared Python helpers (SHARED_CODE_FAULTS) --------------------------------


def _merged_with_own_defaults(spec, base_config: dict, pipeline: str = ""):
    """The sampler merge before issue 33: the folder class's defaults filled in, then the list of
    which keys were only defaults dropped (so PNDM's "leading" spacing reaches DPM-Solver++)."""
    import diffusers

    config = dict(base_config)
    own = getattr(diffusers, str(config.get("_class_name")))
    config = {k: v for k, v in dict(own.from_config(config).config).items() if not k.startswith("_")}
    return getattr(diffusers, spec.class_name).from_config({**config, **spec.overrides})


def _guided_swapped(unet, latents, timestep, text_embeddings, guidance_scale, **conditioning):
    import torch

    eps = unet(
        torch.cat([latents, latents]), timestep.reshape(1).expand(2), text_embeddings, return_dict=False, **conditioning
    )[0]
    cond, uncond = eps.chunk(2)  # the batch is [uncond, cond]: read backwards
    return uncond + guidance_scale * (cond - uncond)


def _time_ids_of_latents(image_size: int) -> list[float]:
    size = float(image_size // 8)
    return [size, size, 0.0, 0.0, size, size] * 2


def _load_without_steps_offset(spec, folder, weights: bool = True):
    model = _ORIGINALS[("wsd.models.folder", "load")](spec, folder, weights)
    model.scheduler_config = {k: v for k, v in model.scheduler_config.items() if k != "steps_offset"}
    return model


def _load_with_prediction_swapped(spec, folder, weights: bool = True):
    model = _ORIGINALS[("wsd.models.folder", "load")](spec, folder, weights)
    was = model.scheduler_config.get("prediction_type", "epsilon")
    model.scheduler_config = {
        **model.scheduler_config,
        "prediction_type": {"epsilon": "v_prediction"}.get(was, "epsilon"),
    }
    return model


_ORIGINALS: dict = {}


@contextlib.contextmanager
def shared_code(specs: tuple[str, ...], record: dict | None = None):
    """The named shared-code faults patched in while the block runs (others are ignored);
    `record` gets spec -> the patched helper."""
    import importlib

    patched, record = [], ({} if record is None else record)
    try:
        for spec in specs:
            kind, _ = parse(spec)
            if kind not in SHARED_CODE_FAULTS:
                continue
            module_name, attr, replacement = SHARED_CODE_FAULTS[kind]
            module = importlib.import_module(module_name)
            key = (module_name, attr)
            if key in _ORIGINALS:  # already patched (a build inside a self-test run)
                continue
            _ORIGINALS[key] = getattr(module, attr)
            setattr(module, attr, globals()[replacement])
            patched.append((module, attr, key))
            record[spec] = f"{module_name}.{attr}"  # no kernel to name: the fault is in Python
        yield
    finally:
        for module, attr, key in reversed(patched):
            setattr(module, attr, _ORIGINALS.pop(key))
