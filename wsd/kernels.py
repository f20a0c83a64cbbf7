"""dist/<model>/kernels.json: every compiled kernel's arguments, and which it writes.

The harness's localization calls kernels one at a time on native and on WebGPU with the
same inputs; in TVM's destination-passing style a kernel's outputs are arguments too, so
it needs to know which arguments are written.
"""

from __future__ import annotations

import re

from wsd.passes import is_prim_func, param_buffers


def _written(script: str, names: list[str]) -> set[str]:
    return {n for n in names if re.search(rf"^\s*{re.escape(n)}\[[^\n]*\] = ", script, re.MULTILINE)}


def signatures(mod) -> dict[str, dict]:
    out = {}
    for gvar, func in mod.functions_items():
        if not is_prim_func(func):
            continue
        bufs = param_buffers(func)
        names = [b.name for b in bufs]
        written = _written(func.script(), names)
        out[gvar.name_hint] = {
            "args": [{"name": b.name, "shape": [int(d) for d in b.shape], "dtype": str(b.dtype)} for b in bufs],
            "outputs": [i for i, n in enumerate(names) if n in written],
        }
    return out
