"""dist/<model>/kernels.json: every compiled kernel's arguments, and which it writes.

The harness's localization calls kernels one at a time on native and on WebGPU with the
same inputs; in TVM's destination-passing style a kernel's outputs are arguments too, so
it needs to know which arguments are written, and which entry points call each kernel
(the report says "kernel X of unet"; the self-test picks kernels of one stage).
"""

from __future__ import annotations

import re

from wsd.passes.ir import CONFIG_ATTR, RULE_ATTR, is_prim_func, param_buffers


def _written(script: str, names: list[str]) -> set[str]:
    return {n for n in names if re.search(rf"^\s*{re.escape(n)}\[[^\n]*\] = ", script, re.MULTILINE)}


CALLED = re.compile(r"R\.call_tir(?:_inplace)?\((?:cls\.)?(\w+),")


def callers(mod) -> dict[str, list[str]]:
    """Kernel name -> the Relax functions (entry points) that call it."""
    out: dict[str, list[str]] = {}
    for gvar, func in mod.functions_items():
        if is_prim_func(func):
            continue
        for name in set(CALLED.findall(func.script())):
            out.setdefault(name, []).append(gvar.name_hint)
    return {k: sorted(v) for k, v in out.items()}


def readers(mod) -> dict[str, list[int]]:
    """Kernel name -> per argument, how many kernel calls read the value it is given (the most
    over the kernel's call sites): an input also read by a later kernel is one whose corruption
    the chained replay sees (the self-test's clobbered-input fault targets one)."""
    from collections import Counter

    import tvm
    from tvm import relax

    ops = {tvm.ir.Op.get("relax.call_tir"), tvm.ir.Op.get("relax.call_tir_inplace")}
    out: dict[str, list[int]] = {}
    for _, func in mod.functions_items():
        if is_prim_func(func) or not isinstance(func.body, relax.SeqExpr):
            continue
        calls = []
        for block in func.body.blocks:
            for binding in block.bindings:
                value = binding.value
                if isinstance(value, relax.Call) and value.op in ops:
                    args = value.args[1]
                    fields = list(args.fields) if isinstance(args, relax.Tuple) else [args]
                    calls.append((value.args[0].name_hint, fields))
        count = Counter(a for _, args in calls for a in args)
        for name, args in calls:
            seen = [count[a] for a in args]
            before = out.get(name, seen)
            out[name] = [max(x, y) for x, y in zip(before, seen, strict=True)]
    return out


def signatures(mod) -> dict[str, dict]:
    out = {}
    called_by = callers(mod)
    read_by = readers(mod)
    for gvar, func in mod.functions_items():
        if not is_prim_func(func):
            continue
        bufs = param_buffers(func)
        names = [b.name for b in bufs]
        written = _written(func.script(), names)
        attrs = func.attrs if func.attrs is not None else {}
        counts = read_by.get(gvar.name_hint, [])
        out[gvar.name_hint] = {
            "args": [
                {"name": b.name, "shape": [int(d) for d in b.shape], "dtype": str(b.dtype)}
                | ({"readers": counts[i]} if i < len(counts) else {})  # the inputs' (outputs are not call args)
                for i, b in enumerate(bufs)
            ],
            "outputs": [i for i, n in enumerate(names) if n in written],
            "rule": str(attrs[RULE_ATTR]) if RULE_ATTR in attrs else None,  # the dlight rule that scheduled it
            "config": str(attrs[CONFIG_ATTR]) if CONFIG_ATTR in attrs else None,
            "entries": called_by.get(gvar.name_hint, []),
        }
    return out


def unplanned(shaders: dict[str, str], table: dict[str, dict]) -> list[str]:
    """Kernels in the built shaders that the pass pipeline did not make (`table`: its signatures).
    relax.build's default GPU pipeline once fused finished kernels again (wsd.passes.pipeline.vm_lowering)."""
    return sorted({re.sub(r"_kernel(_\d+)?$", "", name) for name in shaders} - set(table))


def rule_counts(table: dict[str, dict]) -> dict[str, int]:
    """How many kernels each dlight rule scheduled (None: not scheduled, a CPU build)."""
    counts: dict[str, int] = {}
    for info in table.values():
        key = info.get("rule") or "unscheduled"
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))
