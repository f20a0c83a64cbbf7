"""The compile pipeline: named Relax/TIR transforms, read top to bottom.

`relax.build` is given a module that is already lowered and scheduled, so every
step that matters is visible here (and testable one by one) rather than hidden in
TVM's default pipeline.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from wsd.errors import BuildError


@dataclass(frozen=True)
class Step:
    name: str
    make: Callable  # (target) -> tvm.transform.Pass
    why: str


def _relax():
    from tvm import relax

    return relax


def _bundle_params(target):
    # One tuple argument per entry point: the page passes the entry's params from the
    # tensor cache as a single array instead of hundreds of arguments.
    return _relax().transform.BundleModelParams()


def _split_group_norm(target):
    from wsd import norms

    return norms.split_group_norm()


def _split_k(target):
    from wsd import split_k

    return split_k.split_k_conv2d()


def _legalize_wgsl(target):
    from wsd import legalize

    # Applied for every target, so the native (llvm) build runs the same graph the browser does.
    return legalize.wgsl_legal_types()


# tvmjs asks the device for 10 storage buffers per shader stage (WebGPU's default is 8);
# a fused kernel's inputs and outputs are each one storage buffer. FuseOps does not know
# this limit, so wsd.wgsl checks every kernel against it and names the ones over it.
MAX_STORAGE_BUFFERS = 10


# dlight's Fallback gives each thread one output element with no shared memory: right for
# elementwise kernels, ~30x slower than a real schedule for large reductions (field notes: 62 ms
# vs 2 ms for attention). A reduction over buffers above this size may not fall back silently.
FALLBACK_MAX_ELEMENTS = 1 << 20
RULE_ATTR = "wsd.schedule_rule"  # which dlight rule scheduled a kernel (kernels.json, the manifest)
CONFIG_ATTR = "wsd.schedule_config"  # the rule's configuration for it, where it has one (the matmul tile)


def _schedule(target, allow_fallback: bool = True):
    import tvm

    kernels = ScheduleKernels(target, allow_fallback=allow_fallback)
    return tvm.transform.module_pass(lambda mod, ctx: kernels(mod), opt_level=0, name="wsd.ScheduleKernels")


STEPS: tuple[Step, ...] = (
    Step("bundle-params", _bundle_params, "params travel as one tuple per entry point"),
    Step("decompose", lambda t: _relax().transform.DecomposeOpsForInference(), "batch-norm etc. to plain ops"),
    Step("fold", lambda t: _relax().transform.FoldConstant(), "constant subgraphs (masks, position ids) computed now"),
    Step("wgsl-types", _legalize_wgsl, "WGSL has no 64-bit ints; booleans must not be stored"),
    Step("split-group-norm", _split_group_norm, "GroupNorm's statistics as row reductions over (n, group)"),
    Step("split-k", _split_k, "convs with too few output tiles for the GPU sum K in parts"),
    Step("legalize", lambda t: _relax().transform.LegalizeOps(), "high-level ops to TensorIR"),
    Step("annotate", lambda t: _relax().transform.AnnotateTIROpPattern(), "op patterns for fusion"),
    Step("fuse", lambda t: _relax().transform.FuseOps(), "elementwise work joins its producer"),
    Step("fuse-tir", lambda t: _relax().transform.FuseTIR(), "fused groups become one kernel"),
    Step("dead-code", lambda t: _relax().transform.DeadCodeElimination(), "unused functions and bindings dropped"),
    Step("schedule", _schedule, "every kernel gets a GPU schedule (dlight), or the build fails"),
)


def tuning_step(db_path: str) -> Step:
    """Kernels tuned by MetaSchedule take their records from the database; dlight does the rest."""

    def make(target):
        from wsd.compat import meta_schedule

        ms = meta_schedule()

        database = ms.database.JSONDatabase(work_dir=db_path)
        inner = _relax().transform.MetaScheduleApplyDatabase(enable_warning=False)

        import tvm

        @tvm.transform.module_pass(opt_level=0, name="wsd.ApplyTuning")
        def apply(mod, ctx):
            with database:
                return inner(mod)

        return apply

    return Step("apply-tuning", make, "MetaSchedule records from --tune-db")


def mixed_precision_step() -> Step:
    """fp16 compute and fp16 weights: TVM's ToMixedPrecision casts conv/matmul inputs to float16
    (accumulating in fp32 where it chooses to), and every float32 weight parameter becomes a
    float16 one (`fp16_input_names`), so the shards hold half the bytes (build.py casts them).
    Entry inputs and outputs stay float32. bundle-params moves after it: it names parameters."""

    def make(target):
        import tvm

        def mixed(mod, names):
            return _relax().transform.ToMixedPrecision(out_dtype="float16", fp16_input_names=sorted(names))(mod)

        @tvm.transform.module_pass(opt_level=0, name="wsd.float16")
        def run(mod, ctx):
            names = set()
            for gvar, func in mod.functions_items():
                own = weight_names(tvm.IRModule({gvar: func}), "float32")
                try:  # TVM 0.27 fails on some entries' fp16 weights (the VAE's: "Expected TensorType,
                    mixed(tvm.IRModule({gvar: func}), own)  # but got T.int64"): those keep fp32 weights
                    names |= own
                except tvm.error.InternalError:
                    pass
            return mixed(mod, names)

        return run

    return Step("float16", make, "fp16 arithmetic and fp16 weights for --dtype float16")


def half_softmax_step() -> Step:
    def make(target):
        from wsd.half_softmax import fp16_softmax_pass

        return fp16_softmax_pass()

    return Step("half-softmax", make, "fp16 builds: softmax reads and writes fp16 (fp32 inside), no fp32 copy")


def subgroup_gemm_step() -> Step:
    def make(target):
        from wsd.subgroup_gemm import subgroup_gemm_pass

        return subgroup_gemm_pass(gpu=target.kind.name != "llvm")

    return Step("subgroup-gemm", make, "--subgroup-matrix: convs and matmuls that fit 16x16 tiles as im2col + GEMM")


def weight_names(mod, dtype: str) -> set[str]:
    """Names of the weight parameters (those after `num_input`) of `dtype` in every Relax function."""
    from wsd.capture import var_name
    from wsd.compat import type_of

    out = set()
    for _, func in mod.functions_items():
        if is_prim_func(func) or "num_input" not in (func.attrs or {}):
            continue
        for param in func.params[int(func.attrs["num_input"]) :]:
            if str(getattr(type_of(param), "dtype", "")) == dtype:
                out.add(var_name(param))
    return out


def pipeline(
    target,
    steps: tuple[Step, ...] = STEPS,
    on_step=None,
    tune_db: str | None = None,
    dtype: str = "float32",
    before_schedule: tuple[Step, ...] = (),
    allow_fallback: bool = False,
    subgroup_matrix: bool = False,
):
    import tvm

    if not allow_fallback:
        steps = tuple(
            Step(s.name, lambda t: _schedule(t, allow_fallback=False), s.why) if s.name == "schedule" else s
            for s in steps
        )
    if dtype == "float16":  # where it can run (after fold), and before bundling: it names weights
        bundle = next(s for s in steps if s.name == "bundle-params")
        steps = tuple(s for s in steps if s is not bundle)
        at = [s.name for s in steps].index("wgsl-types")
        steps = (*steps[:at], mixed_precision_step(), half_softmax_step(), bundle, *steps[at:])
    if subgroup_matrix:  # before split-k: the convs it takes are GEMMs then, not split
        at = [s.name for s in steps].index("split-k")
        steps = (*steps[:at], subgroup_gemm_step(), *steps[at:])
    at = [s.name for s in steps].index("schedule")
    steps = (*steps[:at], *before_schedule, *((tuning_step(tune_db),) if tune_db else ()), *steps[at:])
    passes = []
    for step in steps:
        p = step.make(target)
        if on_step is not None:
            p = _announce(p, step.name, on_step)
        passes.append(p)
    return tvm.transform.Sequential(passes, name="wsd")


def apply(
    mod,
    target,
    on_step=None,
    tune_db: str | None = None,
    dtype: str = "float32",
    before_schedule=(),
    allow_fallback=False,
    subgroup_matrix=False,
):
    """Run the pipeline on mod; a BuildError raised inside a pass comes out as a BuildError."""
    from wsd import legalize

    try:
        run = pipeline(
            target,
            on_step=on_step,
            tune_db=tune_db,
            dtype=dtype,
            before_schedule=before_schedule,
            allow_fallback=allow_fallback,
            subgroup_matrix=subgroup_matrix,
        )
        return run(mod)
    except BuildError:
        raise
    except Exception as exc:
        text = str(exc)
        for message in legalize.RAISED:
            if message in text:
                raise BuildError(message) from None
        raise


def _announce(inner, name, on_step):
    import tvm

    @tvm.transform.module_pass(opt_level=0, name=f"wsd.{name}")
    def run(mod, ctx):
        on_step(name)
        return inner(mod)

    return run


def build_config(target) -> dict:
    """PassContext settings for `relax.build`.

    WebGPU forbids binding one buffer both read-write and read-only in a dispatch. TIR's
    StorageRewrite reuses an intermediate's buffer in place for the next one (safe on CUDA),
    and a kernel then reads and writes the same buffer: Dawn refuses the command buffer at
    run time ("includes writable usage and another usage in the same synchronization scope",
    seen in the SDPA softmax of the tiny UNet). So no in-place reuse inside kernels for WebGPU.
    """
    from wsd import compat

    if target.kind.name != "webgpu":
        return {}
    return {compat.disable_storage_rewrite_key(): True}


def dlight_rules(target):
    from wsd.compat import dlight

    dl = dlight()

    if target.kind.name == "llvm":
        return [dl.cpu.GEMV(), dl.cpu.Reduction()] if hasattr(dl, "cpu") else []
    from wsd.matmul_schedule import webgpu_matmul_rule

    return [webgpu_matmul_rule(), dl.gpu.GEMV(), dl.gpu.Reduction(), dl.gpu.GeneralReduction(), dl.gpu.Fallback()]


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


def is_prim_func(func) -> bool:
    from wsd.compat import tir

    return isinstance(func, tir().PrimFunc)


def param_buffers(func) -> list:
    from wsd.compat import param_buffers as buffers

    return buffers(func)


class ScheduleKernels:
    """dlight's rules, tried in order per kernel; a rule that raises counts as not applying.

    TVM's own ApplyDefaultSchedule stops the whole build when one rule asserts on an
    unusual kernel (GEMV does on some reductions); here the next rule gets its turn,
    and a kernel no rule schedules fails the build with its name.
    """

    def __init__(self, target, allow_fallback: bool = True):
        self.target = target
        self.allow_fallback = allow_fallback
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
                        from wsd.legalize import fail

                        fail(f"kernel {gvar.name_hint!r} has no GPU schedule ({tried})")
                    continue  # CPU kernels run fine unscheduled
                rule = self.applied[gvar.name_hint]
                if rule == "Fallback" and not self.allow_fallback and has_reduction(func):
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
        from wsd.legalize import fail

        tried = "; ".join(self.rule_errors.get(name, [])) or "the other rules did not match"
        fail(
            f"kernel {name!r} reduces over buffers of up to {size} elements and only dlight's Fallback "
            f"schedules it (one thread per output, serial reduction, no shared memory); tried {tried}. "
            "Add a rule or tuning records, or build with --allow-fallback"
        )

    def _first_rule(self, name, func):
        for rule in dlight_rules(self.target):
            try:
                space = rule.apply(func, self.target, False)
            except Exception as exc:  # a rule's internal assertion: it does not apply here
                self.rule_errors.setdefault(name, []).append(f"{type(rule).__name__}: {type(exc).__name__} {exc}")
                continue
            if space is None:
                continue
            self.applied[name] = type(rule).__name__
            if hasattr(rule, "describe"):
                self.configs[name] = rule.describe()
            return space[0] if isinstance(space, list) else space
        return None
