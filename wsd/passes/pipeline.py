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
from wsd.passes import group_norm, half_softmax, ir, mixed_precision, schedule, split_k, subgroup_gemm, tuning
from wsd.passes import wgsl_types as wgsl_types_pass
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


def steps(options: PassOptions, injected: tuple[Step, ...] = ()) -> tuple[Step, ...]:
    """The steps a build with `options` runs, in order; `injected`: the harness's self-test
    faults (wsd/faults.py), run on the lowered graph just before it is scheduled."""
    declared = (
        Step("decompose", _relax("DecomposeOpsForInference"), "batch-norm etc. to plain ops"),
        Step("fold", _relax("FoldConstant"), "constant subgraphs (masks, position ids) computed now"),
        Step(
            "float16",
            lambda t, o: mixed_precision.mixed_precision_pass(),
            "fp16 arithmetic and fp16 weights (it names weights: before bundle-params)",
            when=lambda o: o.float16,
        ),
        Step(
            "half-softmax",
            lambda t, o: half_softmax.fp16_softmax_pass(),
            "softmax reads and writes fp16 (fp32 inside), no fp32 copy of the scores",
            when=lambda o: o.float16,
        ),
        # params travel as one tuple per entry point: the page passes the entry's params from
        # the tensor cache as a single array instead of hundreds of arguments
        Step("bundle-params", _relax("BundleModelParams"), "params travel as one tuple per entry point"),
        # for every target, so the native (llvm) build runs the same graph the browser does
        Step(
            "wgsl-types",
            lambda t, o: wgsl_types_pass.wgsl_legal_types(),
            "WGSL has no 64-bit ints; booleans must not be stored",
        ),
        Step(
            "split-group-norm",
            lambda t, o: group_norm.split_group_norm(),
            "GroupNorm's statistics as row reductions over (n, group)",
        ),
        Step(
            "subgroup-gemm",
            lambda t, o: subgroup_gemm.subgroup_gemm_pass(gpu=t.kind.name != "llvm"),
            "convs and matmuls that fit 16x16 tiles as im2col + GEMM (before split-k: they are GEMMs then)",
            when=lambda o: o.subgroup_matrix,
        ),
        Step(
            "split-k",
            lambda t, o: split_k.split_k_conv2d(),
            "convs with too few output tiles for the GPU sum K in parts",
            when=lambda o: o.split_k,
        ),
        Step("legalize", _relax("LegalizeOps"), "high-level ops to TensorIR"),
        Step("annotate", _relax("AnnotateTIROpPattern"), "op patterns for fusion"),
        Step("fuse", _relax("FuseOps"), "elementwise work joins its producer"),
        Step("fuse-tir", _relax("FuseTIR"), "fused groups become one kernel"),
        Step("dead-code", _relax("DeadCodeElimination"), "unused functions and bindings dropped"),
        *injected,
        Step(
            "apply-tuning",
            lambda t, o: tuning.apply_tuning_pass(o.tune_db),
            "MetaSchedule records from --tune-db",
            when=lambda o: bool(o.tune_db),
        ),
        Step("schedule", schedule.schedule_pass, "every kernel gets a GPU schedule (dlight), or the build fails"),
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
