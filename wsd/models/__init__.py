"""The model registry: adding a model is one entry in MODELS."""

from __future__ import annotations

from wsd.errors import WsdError
from wsd.models.sd15 import SD15, SD15_TINY
from wsd.models.spec import Component, ModelSpec, Scheduler

MODELS: dict[str, ModelSpec] = {m.name: m for m in (SD15, SD15_TINY)}


def get(name: str) -> ModelSpec:
    try:
        return MODELS[name]
    except KeyError:
        raise WsdError(f"unknown model {name!r}; known models: {', '.join(sorted(MODELS))}") from None


__all__ = ["MODELS", "Component", "ModelSpec", "Scheduler", "get"]
