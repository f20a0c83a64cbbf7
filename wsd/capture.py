"""Capture: torch.export each entry point, import it into Relax, merge into one IRModule.

Parameters stay function inputs (`keep_params_as_input`) so they ship as tensor-cache
shards rather than constants baked into the .wasm.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from wsd.entries import EntryPoint


@dataclass
class Captured:
    mod: object  # tvm.IRModule with one Relax function per entry point
    params: dict[str, list[tuple[str, np.ndarray]]] = field(default_factory=dict)  # entry -> named params
    exported: dict[str, object] = field(default_factory=dict)  # entry -> torch ExportedProgram


def example_args(entry: EntryPoint, spec, seed: int = 0):
    import torch

    rng = np.random.default_rng(seed)
    return tuple(torch.from_numpy(np.ascontiguousarray(t.example(rng))) for t in entry.inputs(spec))


def in_dtype(module, dtype: str):
    """The module computing in `dtype` with its float inputs and outputs kept float32, so an
    fp16 build has the same entry signatures as an fp32 one (the samplers stay fp32)."""
    import torch

    if dtype == "float32":
        return module
    half = getattr(torch, dtype)

    class Cast(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = module.to(half)

        def forward(self, *args):
            args = [a.to(half) if a.is_floating_point() else a for a in args]
            return self.inner(*args).float()

    return Cast().eval()


def export_entry(entry: EntryPoint, model, dtype: str = "float32"):
    import torch

    module = entry.wrapper(model)
    if entry.has_params:
        module = in_dtype(module, dtype)
    with torch.no_grad():
        return torch.export.export(module, example_args(entry, model.spec))


def var_name(var) -> str:
    """A Relax Var's name: `name_hint` up to TVM 0.26, `name` from 0.27."""
    name = getattr(var, "name_hint", None)
    return str(name if name is not None else var.name)


def import_exported(name: str, exported, custom_convert_map=None):
    """One ExportedProgram -> (Relax function named `name`, its params as named numpy arrays)."""
    from tvm.relax.frontend.torch import from_exported_program

    mod = from_exported_program(exported, keep_params_as_input=True, unwrap_unit_return_tuple=True,
                                custom_convert_map=custom_convert_map)
    func = mod["main"]
    values = list(func.attrs["params"]) if "params" in func.attrs else []
    num_input = int(func.attrs["num_input"]) if "num_input" in func.attrs else len(func.params)
    names = [var_name(p) for p in func.params[num_input:]]
    func = func.without_attr("params").with_attr("global_symbol", name)
    return func, [(n, v.numpy()) for n, v in zip(names, values, strict=True)]


def capture(model, entries, dtype: str = "float32", echo=None) -> Captured:
    import tvm

    functions = {}
    out = Captured(mod=None)
    for entry in entries:
        exported = export_entry(entry, model, dtype)
        func, params = import_exported(entry.name, exported)
        functions[entry.name] = func
        out.params[entry.name] = params
        out.exported[entry.name] = exported
        if echo:
            echo(entry.name)
    out.mod = tvm.IRModule({tvm.ir.GlobalVar(n): f for n, f in functions.items()})
    return out
