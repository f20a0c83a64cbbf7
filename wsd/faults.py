"""Compiler faults injected on purpose, so the harness can prove it catches them.

`wsd build --inject drop-bias@clip` builds a module in which one kernel of the `clip`
entry point forgets its bias add, as a codegen bug would: same kernel name, same
signature, wrong numbers. Only the harness's self-test and its `--inject` option use it.
"""

from __future__ import annotations

import re

from wsd.errors import BuildError
from wsd.kernels import CALLED
from wsd.passes import Step, is_prim_func, param_buffers

KINDS = ("drop-bias", "guidance-scale")


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
            record[f"drop-bias@{entry}"] = gvar.name_hint
            return mod
    raise BuildError(f"drop-bias@{entry}: no kernel of {entry} adds a 1-D parameter")


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
            record[f"guidance-scale@{entry}"] = gvar.name_hint
            return mod
    raise BuildError(f"guidance-scale@{entry}: no kernel of {entry} scales a difference by a scalar")


REWRITES = {"drop-bias": drop_bias, "guidance-scale": scale_guidance}


def steps(specs: tuple[str, ...], record: dict) -> tuple[Step, ...]:
    """Pass-pipeline steps for the named faults (they run just before scheduling)."""
    out = []
    for spec in specs:
        kind, entry = parse(spec)

        def make(target, entry=entry, kind=kind):
            import tvm

            return tvm.transform.module_pass(
                lambda mod, ctx: REWRITES[kind](mod, entry, record), opt_level=0, name=f"wsd.fault.{kind}"
            )

        out.append(Step(f"fault:{spec}", make, "an injected fault (harness self-test)"))
    return tuple(out)
