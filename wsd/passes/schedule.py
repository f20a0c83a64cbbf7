"""Every kernel gets a GPU schedule: dlight's rules tried in order, or the build fails naming it.

dlight's Fallback gives each thread one output element with no shared memory: right for
elementwise kernels, ~30x slower than a real schedule for large reductions (field notes: 62 ms
vs 2 ms for attention). A reduction over buffers above FALLBACK_MAX_ELEMENTS may not fall back
silently (`allow_fallback` lets it).
"""

from __future__ import annotations

import math
import re

from wsd.passes.ir import CONFIG_ATTR, RULE_ATTR, fail, is_prim_func, param_buffers
from wsd.passes.options import DEFAULT, PassOptions

FALLBACK_MAX_ELEMENTS = 1 << 20


def make(target, options: PassOptions):
    """The pipeline's step (wsd/passes/pipeline.py)."""
    import tvm

    kernels = ScheduleKernels(target, options)
    return tvm.transform.module_pass(lambda mod, ctx: kernels(mod), opt_level=0, name="wsd.ScheduleKernels")


def dlight_rules(target, options: PassOptions = DEFAULT):
    from wsd.compat import dlight

    dl = dlight()

    if target.kind.name == "llvm":
        return [dl.cpu.GEMV(), dl.cpu.Reduction()] if hasattr(dl, "cpu") else []
    from wsd.passes.gather_schedule import gather_rule
    from wsd.passes.matmul_schedule import webgpu_matmul_rule

    rules = [dl.gpu.GEMV(), dl.gpu.Reduction(), dl.gpu.GeneralReduction(), gather_rule(), dl.gpu.Fallback()]
    return [webgpu_matmul_rule(options), *rules]


def _scheduled_attr():
    from wsd.compat import scheduled_attr

    return scheduled_attr()


_REDUCE_AXIS = re.compile(r'T\.axis\.reduce|T\.axis\.remap\("[SR]*R')


def has_reduction(func) -> bool:
    """Whether a kernel reduces (a serial loop per output under Fallback); elementwise kernels do not.
    Read from the printed TIR: block iterators typed R (the IR classes moved tir -> tirx in 0.27)."""
    return bool(_REDUCE_AXIS.search(func.script()))


def largest_buffer_elements(func) -> int:
    """Elements of a kernel's largest parameter buffer (inputs and outputs alike)."""
    sizes = [1]
    for buf in param_buffers(func):
        n = 1
        for dim in buf.shape:
            n *= int(dim) if hasattr(dim, "value") or isinstance(dim, int) else 1
        sizes.append(n)
    return max(sizes)


class ScheduleKernels:
    """dlight's rules, tried in order per kernel; a rule that raises counts as not applying.

    TVM's own ApplyDefaultSchedule stops the whole build when one rule asserts on an
    unusual kernel (GEMV does on some reductions); here the next rule gets its turn,
    and a kernel no rule schedules fails the build with its name.
    """

    def __init__(self, target, options: PassOptions = DEFAULT):
        self.target = target
        self.options = options
        self.rule_errors: dict[str, list[str]] = {}
        self.applied: dict[str, str] = {}
        self.configs: dict[str, str] = {}

    def __call__(self, mod):
        attr = _scheduled_attr()
        gpu = self.target.kind.name != "llvm"
        updated = {}
        with self.target:
            for gvar, func in mod.functions_items():
                if not is_prim_func(func) or (attr in func.attrs and int(func.attrs[attr]) == 1):
                    continue
                sch = self._first_rule(gvar.name_hint, func)
                if sch is None:
                    if gpu:
                        tried = "; ".join(self.rule_errors.get(gvar.name_hint, [])) or "no rule matched"
                        fail(f"kernel {gvar.name_hint!r} has no GPU schedule ({tried})")
                    continue  # CPU kernels run fine unscheduled
                rule = self.applied[gvar.name_hint]
                if rule == "Fallback" and not self.options.allow_fallback and has_reduction(func):
                    self._refuse_large_fallback(gvar.name_hint, func)
                func = sch.mod["main"].with_attr(attr, True).with_attr(RULE_ATTR, rule)
                if gvar.name_hint in self.configs:
                    func = func.with_attr(CONFIG_ATTR, self.configs[gvar.name_hint])
                updated[gvar] = func
        for gvar, func in updated.items():
            mod[gvar] = func
        return mod

    def _refuse_large_fallback(self, name, func) -> None:
        size = largest_buffer_elements(func)
        if size <= FALLBACK_MAX_ELEMENTS:
            return
        tried = "; ".join(self.rule_errors.get(name, [])) or "the other rules did not match"
        fail(
            f"kernel {name!r} reduces over buffers of up to {size} elements and only dlight's Fallback "
            f"schedules it (one thread per output, serial reduction, no shared memory); tried {tried}. "
            "Add a rule or tuning records, or build with --allow-fallback"
        )

    def _first_rule(self, name, func):
        for rule in dlight_rules(self.target, self.options):
            try:
                space = rule.apply(func, self.target, False)
            except Exception as exc:  # a rule's internal assertion: it does not apply here
                self.rule_errors.setdefault(name, []).append(f"{type(rule).__name__}: {type(exc).__name__} {exc}")
                continue
            if space is None:
                continue
            sch = space[0] if isinstance(space, list) else space
            limit = self._shared_limit() if type(rule).__name__ != "Fallback" else 0  # Fallback shares nothing
            used = shared_bytes(sch.mod["main"]) if limit else 0
            if limit and used > limit - SHARED_RESERVE:
                why = f"{used} bytes of workgroup memory, over {limit} less {SHARED_RESERVE} for reduction scratch"
                self.rule_errors.setdefault(name, []).append(f"{type(rule).__name__}: {why}")
                continue
            self.applied[name] = type(rule).__name__
            if hasattr(rule, "describe"):
                self.configs[name] = rule.describe()
            return sch
        return None

    def _shared_limit(self) -> int:
        if self.target.kind.name == "llvm":
            return 0
        return int(self.target.attrs.get("max_shared_memory_per_block", 0) or 0)


# Codegen adds cross-thread reduction scratch to a kernel's own shared buffers (256 bytes seen on a
# GeneralReduction of the VAE encoder's group norm: 32768 + 256 over WebGPU's 32768), so a schedule
# must leave this much room or the build fails in codegen instead of trying the next rule.
SHARED_RESERVE = 1024


def _tuple(text: str) -> str:
    """The text inside the parenthesized tuple `text` starts with."""
    depth = 0
    for i, ch in enumerate(text):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if depth == 0:
            return text[1:i]
    return text[1:]


def _ints(text: str) -> list[int]:
    return [int(d) for d in re.findall(r"(?:T\.int(?:32|64)\()?(\d+)\)?", text)]


def shared_bytes(func) -> int:
    """Workgroup (shared) memory a scheduled kernel will allocate, in bytes: its shared buffers after
    the lowering steps that shrink each to the region one workgroup touches (a schedule's full-size
    cache buffers become tiles there), summed from the printed TIR (0.27's Python API has no TIR
    visitor). Where lowering fails here, 0: codegen still checks."""
    import tvm

    st = tvm.s_tir.transform if hasattr(tvm, "s_tir") else tvm.tir.transform
    steps = [st.LowerInitBlock(), st.PlanAndUpdateBufferAllocationLocation(), st.ConvertBlocksToOpaque()]
    try:
        mod = tvm.transform.Sequential([*steps, st.CompactBufferAllocation()])(tvm.IRModule({"main": func}))
    except Exception:  # noqa: BLE001 (a kernel these steps cannot take: leave it to codegen)
        return 0
    total = 0
    for line in mod["main"].script().splitlines():
        if 'scope="shared' not in line or "alloc_buffer((" not in line:
            continue
        call = line[line.index("alloc_buffer((") + len("alloc_buffer(") :]
        shape, rest = _tuple(call), call[len(_tuple(call)) + 2 :]
        strides = re.search(r"strides=\(", rest)
        dims, steps = _ints(shape), (_ints(_tuple(rest[strides.end() - 1 :])) if strides else [])
        elements = max(d * st for d, st in zip(dims, steps, strict=False)) if steps else math.prod(dims)
        dtype = re.search(r'"((?:u?int|float|bfloat)\d+)"', rest)
        total += elements * (int(re.sub(r"\D", "", dtype.group(1))) if dtype else 32) // 8
    return total
