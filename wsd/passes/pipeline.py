"""The compile pipeline: every step in the order it runs, each with the condition it runs under.

`relax.build` is given a module that is already lowered and scheduled, so every step that
matters is visible here (and testable one by one) rather than hidden in TVM's default pipeline.
A step's `make(target, options)` gives its tvm.transform.Pass; `when(options)` says whether the
build's PassOptions want it (default: always).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from wsd.errors import BuildError
from wsd.passes import (
    accumulate,
    group_norm,
    half_softmax,
    ir,
    mixed_precision,
    pad_apart,
    schedule,
    split_k,
    subgroup_attention,
    subgroup_gemm,
    tuning,
    wgsl_types,
)
from wsd.passes.options import DEFAULT, PassOptions


def _always(options: PassOptions) -> bool:
    return True


@dataclass(frozen=True)
class Step:
    name: str
    make: Callable  # (target, options) -> tvm.transform.Pass
    why: str
    when: Callable[[PassOptions], bool] = _always


def _relax(name: str):
    def make(target, options):
        from tvm import relax

        return getattr(relax.transform, name)()

    return make


def _common_subexpressions(target, options):
    import tvm
    from tvm import relax

    # CSE leaves the repeats as aliases of the first; FuseOps would count an alias as one more
    # consumer and stop fusing there (SiLU's sigmoid and multiply became two kernels)
    return tvm.transform.Sequential(
        [relax.transform.EliminateCommonSubexpr(), relax.transform.CanonicalizeBindings()], name="wsd.CSE"
    )


def _cse(o: PassOptions) -> bool:
    return o.cse


def _float16(o: PassOptions) -> bool:
    return o.float16


def _subgroup_matrix(o: PassOptions) -> bool:
    return o.subgroup_matrix


def _fused_attention(o: PassOptions) -> bool:
    return o.fused_attention and o.subgroup_matrix and o.float16


def _split_k(o: PassOptions) -> bool:
    return o.split_k


def _tuned(o: PassOptions) -> bool:
    return bool(o.tune_db)


def steps(options: PassOptions, injected: tuple[Step, ...] = ()) -> tuple[Step, ...]:
    """The steps a build with `options` runs, in order; `injected`: the harness's self-test
    faults (wsd/faults.py), run on the lowered graph just before it is scheduled."""
    declared = (
        Step("decompose", _relax("DecomposeOpsForInference"), "batch-norm etc. to plain ops"),
        Step("fold", _relax("FoldConstant"), "constant subgraphs (masks, position ids) computed now"),
        # ToMixedPrecision names weights one by one: before bundle-params
        Step("float16", mixed_precision.make, "fp16 arithmetic and fp16 weights", when=_float16),
        # before half-softmax: it matches the softmax as ToMixedPrecision leaves it, fp32 between casts
        Step(
            "subgroup-attention", subgroup_attention.make, "matmul-softmax-matmul as one kernel", when=_fused_attention
        ),
        Step("half-softmax", half_softmax.make, "softmax in and out fp16, fp32 inside", when=_float16),
        # after float16: its casts of an input (the text embedding: 32 in SD 1.5's UNet) merge too
        Step("cse", _common_subexpressions, "work repeated on the same value done once (SiLU of temb)", when=_cse),
        # the page passes an entry's params from the tensor cache as one array, not hundreds
        Step("bundle-params", _relax("BundleModelParams"), "params travel as one tuple per entry point"),
        # every target: the native (llvm) build runs the same graph the browser does
        Step("wgsl-types", wgsl_types.make, "WGSL has no 64-bit ints; booleans must not be stored"),
        Step("split-group-norm", group_norm.make, "GroupNorm: partial sums over the GPU, then elementwise"),
        # before split-k: the convs it takes are GEMMs then
        Step("subgroup-gemm", subgroup_gemm.make, "16x16-tiled convs and matmuls as GEMMs", when=_subgroup_matrix),
        Step("f32-accumulate", accumulate.make, "fp16 convs and matmuls sum in fp32, write fp16", when=_float16),
        Step("split-k", split_k.make, "convs with too few output tiles sum K in parts", when=_split_k),
        Step("legalize", _relax("LegalizeOps"), "high-level ops to TensorIR"),
        Step("annotate", _relax("AnnotateTIROpPattern"), "op patterns for fusion"),
        Step("pad-apart", pad_apart.make, "a pad is its own kernel, not a conv's epilogue (no rule schedules that)"),
        Step("fuse", _relax("FuseOps"), "elementwise work joins its producer"),
        Step("fuse-tir", _relax("FuseTIR"), "fused groups become one kernel"),
        Step("dead-code", _relax("DeadCodeElimination"), "unused functions and bindings dropped"),
        *injected,
        Step("apply-tuning", tuning.make, "MetaSchedule records from --tune-db", when=_tuned),
        Step("schedule", schedule.make, "every kernel gets a GPU schedule (dlight), or the build fails"),
    )
    return tuple(step for step in declared if step.when(options))


def pipeline(target, options: PassOptions = DEFAULT, on_step=None, injected: tuple[Step, ...] = ()):
    import tvm

    passes = []
    for step in steps(options, injected):
        made = step.make(target, options)
        passes.append(made if on_step is None else _announce(made, step.name, on_step))
    return tvm.transform.Sequential(passes, name="wsd")


def apply(mod, target, options: PassOptions = DEFAULT, on_step=None, injected: tuple[Step, ...] = ()):
    """Run the pipeline on mod; a BuildError raised inside a pass comes out as a BuildError."""
    with ir.failures() as raised:
        try:
            return pipeline(target, options, on_step=on_step, injected=injected)(mod)
        except BuildError:
            raise
        except Exception as exc:
            text = str(exc)
            for message in raised:
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


def vm_lowering():
    """What `relax.build` runs on the module `apply` made: the VM's lowering and memory planning
    only. Its default pipeline for a GPU target starts with LegalizeOps, FuseOps, FuseTIR and dlight
    again, which re-fused our finished kernels: two pure reshapes (free views at run time) became one
    copy kernel, 8.8 ms per SD 1.5 UNet call on an H100 (`fused_reshape34_reshape35`, the attention
    scores), and a softmax was fused between two GEMMs and rescheduled by dlight's defaults."""
    import tvm
    from tvm import relax

    t = relax.transform
    steps = [
        t.RewriteDataflowReshape(),
        t.ToNonDataflow(),
        t.RemovePurityChecking(),
        t.CallTIRRewrite(),
        t.StaticPlanBlockMemory(),
        t.LowerAllocTensor(),
        t.KillAfterLastUse(),
        t.LowerRuntimeBuiltin(),
        t.ComputePrimValue(),
        t.VMShapeLower(),
        t.AttachGlobalSymbol(),
    ]
    return tvm.transform.Sequential(steps, name="wsd.VMLowering")


def build(mod, target):
    """`relax.build` of an `apply`d module, with `vm_lowering` and the build config for `target`."""
    import tvm
    from tvm import relax

    with tvm.transform.PassContext(opt_level=3, config=build_config(target)):
        return relax.build(mod, target, relax_pipeline=vm_lowering())


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
