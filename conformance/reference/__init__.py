"""The reference side of the gate: diffusers and transformers, called the way their users call them.

A reference is somebody else's code. Nothing in this package imports `wsd`: a bug in the
product's helpers (its sampler-config merge, its CFG wrapper, SDXL's time ids, its folder
loader) then sits on one side of the comparison only, where the gate can see it.
`tests/test_conformance/test_reference_independence.py` fails if a module here imports from `wsd`.
"""

from conformance.reference.model import SAMPLERS, ReferenceModel

__all__ = ["SAMPLERS", "ReferenceModel"]
