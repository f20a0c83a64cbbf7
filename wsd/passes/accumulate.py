"""fp16 convs and matmuls sum their products in fp32, and still write fp16.

ToMixedPrecision is given `out_dtype="float16"` (wsd/passes/mixed_precision.py): its convs and
matmuls then accumulate in f16, which costs the full SD 1.5 UNet ~20 dB against PyTorch fp32
(~31 dB on an H100, where PyTorch's own fp16 UNet holds 50.6). `out_dtype="float32"` instead
would leave every conv's output, and all elementwise work after it, in f32: twice the bytes
between kernels. Here each remaining f16 x f16 -> f16 call becomes f16 x f16 -> f32 followed by
a cast to f16, which FuseOps joins into the kernel's epilogue: f32 sums in registers, f16 out.

Runs after subgroup-gemm (whose tensor-core kernels already accumulate in f32, and whose TVM
fallback keeps the GEMM's own dtype) and before split-k (whose partial sums then are f32).
"""

from __future__ import annotations

from wsd.passes.ir import call_rewriter, dtype_of

HALF, FULL = "float16", "float32"


def _halves(call) -> bool:
    return dtype_of(call) == HALF and all(dtype_of(a) == HALF for a in call.args)


def f32_accumulators():
    import tvm
    from tvm import relax

    def conv(builder, call, bound):
        if not _halves(call):
            return None
        a = call.attrs
        wide = relax.op.nn.conv2d(
            *call.args,
            strides=a.strides,
            padding=a.padding,
            dilation=a.dilation,
            groups=a.groups,
            data_layout=a.data_layout,
            kernel_layout=a.kernel_layout,
            out_layout=a.out_layout,
            out_dtype=FULL,
        )
        return relax.op.astype(builder.emit(wide), HALF)

    def matmul(builder, call, bound):
        if not _halves(call):
            return None
        return relax.op.astype(builder.emit(relax.op.matmul(*call.args, out_dtype=FULL)), HALF)

    return tvm.transform.Sequential(
        [
            call_rewriter("relax.nn.conv2d", conv, "wsd.F32AccumulateConv2d"),
            call_rewriter("relax.matmul", matmul, "wsd.F32AccumulateMatmul"),
        ],
        name="wsd.F32Accumulate",
    )


def make(target, options):
    """The pipeline's step (wsd/passes/pipeline.py)."""
    return f32_accumulators()
