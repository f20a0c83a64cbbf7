"""The model registry: adding a model is one entry in MODELS."""

from __future__ import annotations

from wsd.errors import WsdError
from wsd.models.sd15 import SD15, SD15_TINY
from wsd.models.sdxl import SDXL, SDXL_TINY
from wsd.models.spec import Component, ModelSpec, Scheduler

MODELS: dict[str, ModelSpec] = {m.name: m for m in (SD15, SD15_TINY, SDXL, SDXL_TINY)}


def get(name: str) -> ModelSpec:
    try:
        return MODELS[name]
    except KeyError:
        raise WsdError(f"unknown model {name!r}; known models: {', '.join(sorted(MODELS))}") from None


def family_preset(family: str) -> ModelSpec:
    """The full-size preset of a family: what a user's folder of that family is checked against."""
    for spec in MODELS.values():
        if spec.family == family and spec.name == family:
            return spec
    raise WsdError(f"no preset for family {family!r}")


__all__ = ["MODELS", "Component", "ModelSpec", "Scheduler", "family_preset", "get"]
