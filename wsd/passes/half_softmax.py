"""Attention's softmax in an fp16 build: fp16 in and out, fp32 inside one kernel.

TVM's ToMixedPrecision keeps softmax in fp32, so each attention's scores travel as
f16 -> cast -> f32 softmax -> cast -> f16: two extra elementwise kernels and an fp32 copy of
the score matrix (SD 1.5 at 512²: 1 GiB per self-attention, 8.6 ms of a 140 ms UNet call
on an H200, benchmarks/results/gpu-2026-12-03-sd15-float16-sd15-f16.json). Here the softmax
reads the fp16 scores, computes in fp32 and writes fp16, and a cast to fp32 that is only ever
cast back to fp16 (through reshapes) is dropped: fp16 -> fp32 -> fp16 is exact.

Runs right after ToMixedPrecision, only in fp16 builds, for every target.
"""

from __future__ import annotations

from wsd.passes.ir import call_rewriter, dtype_of, op_name

# ops that move elements without changing them: a round trip may pass through these
_LAYOUT_OPS = ("relax.reshape", "relax.broadcast_to", "relax.permute_dims")


def softmax_in_fp16():
    from tvm import relax, topi

    def fp32_inside(x, axis):
        return topi.cast(topi.nn.softmax(topi.cast(x, "float32"), axis=axis), "float16")

    def rewrite(builder, call, bound):
        upcast = bound(call.args[0])
        if op_name(upcast) != "relax.astype" or dtype_of(upcast.args[0]) != "float16" or dtype_of(call) != "float32":
            return None
        half = builder.emit_te(fp32_inside, upcast.args[0], int(call.attrs.axis), primfunc_name_hint="softmax_f16")
        return relax.op.astype(half, "float32")  # dropped by the round-trip rewrite where cast back

    return call_rewriter("relax.nn.softmax", rewrite, "wsd.SoftmaxInFp16")


def drop_round_trips():
    from tvm import relax

    def rewrite(builder, call, bound):
        if str(call.attrs.dtype) != "float16":
            return None
        chain, expr = [], bound(call.args[0])
        while op_name(expr) in _LAYOUT_OPS:
            chain.append(expr)
            expr = bound(expr.args[0])
        if op_name(expr) != "relax.astype" or dtype_of(expr.args[0]) != "float16":
            return None
        value = expr.args[0]
        for layout in reversed(chain):  # the same moves, on the fp16 tensor
            value = builder.emit(relax.Call(layout.op, [value, *layout.args[1:]], layout.attrs))
        return value

    return call_rewriter("relax.astype", rewrite, "wsd.DropFp16RoundTrips")


def fp16_softmax_pass():
    import tvm
    from tvm import relax

    return tvm.transform.Sequential(
        [softmax_in_fp16(), drop_round_trips(), relax.transform.DeadCodeElimination()], name="wsd.HalfSoftmax"
    )


def make(target, options):
    """The pipeline's step (wsd/passes/pipeline.py)."""
    return fp16_softmax_pass()
