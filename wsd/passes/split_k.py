"""Split-K for convolutions that cannot fill the GPU: more workgroups by splitting the reduction.

As an implicit GEMM a conv2d has M = batch x output pixels, N = output channels and
K = input channels x kernel area. SD 1.5's 16x16 and 8x8 UNet levels have M = 512 and 128 with
K = 11520: even 16x16 tiles give few workgroups of little work each (measured on an H200:
the 1280-channel 3x3 convs ran at 3-6 TFLOP/s, 50 ms of a 185 ms UNet call). WGSL has no float
atomics, so the split is two kernels: one computes S partial sums, each over a contiguous
range of the input channels (a batched implicit GEMM that dlight's Matmul rule schedules with
batch = S), and an elementwise sum of the S partials that fuses with the conv's epilogue (bias,
residual, scale). S is the smallest power of two that gives MIN_WORKGROUPS 128x128 tiles while
every part keeps at least MIN_PART_K of K; the partials are summed in fp32.

Runs before LegalizeOps, for every target: the native build runs the same graph. Layouts other
than NCHW/OIHW, and grouped convolutions, are left whole.
"""

from __future__ import annotations

from wsd.passes.ir import call_rewriter, static, type_info
from wsd.passes.matmul_schedule import MIN_WORKGROUPS

# The tile the workgroup count is reckoned with: convs split until 128x128 tiles (8x8 outputs per
# thread at 256 threads) fill the GPU, and matmul_schedule then gives them those tiles. Reckoned
# with 64x64 tiles, fewer convs split and an H200's SD 1.5 UNet took 135.3 ms in fp16 instead of
# 119.5 (docs/gpu.md). Comparison builds without the split: `wsd build --no-split-k`.
TILE = 128
MIN_PART_K = 256  # each part's reduction stays long enough to amortize loading its tiles
MAX_SPLIT = 16


def split_factor(m: int, n: int, k: int, channels: int, area: int) -> int:
    """How many parts to split K (= channels x area) into for an M x N output; 1: no split."""
    tiles = -(-m // TILE) * -(-n // TILE)
    split = 1
    while tiles * split < MIN_WORKGROUPS and split < MAX_SPLIT:
        nxt = split * 2
        if channels % nxt or (channels // nxt) * area < MIN_PART_K:
            break
        split = nxt
    return split


def sum_parts(p, out_dtype, axis=0, name="conv2d_split_k_sum"):
    """The partial sums along `axis` added up in fp32, as an elementwise kernel (the parts unrolled):
    it fuses with the epilogue that follows, where a reduction kernel would stand alone."""
    from tvm import te

    split = int(p.shape[axis])
    shape = [d for i, d in enumerate(p.shape) if i != axis]

    def add(*i):
        at = lambda s: (*i[:axis], s, *i[axis:])  # noqa: E731
        total = p[at(0)].astype("float32")
        for s in range(1, split):
            total = total + p[at(s)].astype("float32")
        return total.astype(out_dtype)

    return te.compute(shape, add, name=name)


def split_k_conv2d():
    from tvm import te, topi

    def partial_sums(x, w, split, strides, padding, dilation, out_dtype):
        n, c, _, _ = (int(d) for d in x.shape)
        co, _, kh, kw = (int(d) for d in w.shape)
        top, left, bottom, right = padding
        if any(padding):
            x = topi.nn.pad(x, [0, 0, top, left], [0, 0, bottom, right], name="pad_temp")
        part = c // split
        ho = (int(x.shape[2]) - (kh - 1) * dilation[0] - 1) // strides[0] + 1
        wo = (int(x.shape[3]) - (kw - 1) * dilation[1] - 1) // strides[1] + 1
        rc, ry, rx = te.reduce_axis((0, part), "rc"), te.reduce_axis((0, kh), "ry"), te.reduce_axis((0, kw), "rx")
        return te.compute(
            (split, n, co, ho, wo),
            lambda s, b, o, i, j: te.sum(
                x[b, s * part + rc, i * strides[0] + ry * dilation[0], j * strides[1] + rx * dilation[1]].astype(
                    out_dtype
                )
                * w[o, s * part + rc, ry, rx].astype(out_dtype),
                axis=[rc, ry, rx],
            ),
            name="conv2d_split_k",
        )

    def split(builder, call, bound):
        a = call.attrs
        x, w = call.args
        xs, ws = static(type_info(x).shape), static(type_info(w).shape)
        if xs is None or ws is None or int(a.groups) != 1:
            return None
        if (str(a.data_layout), str(a.kernel_layout), str(a.out_layout) or "NCHW") != ("NCHW", "OIHW", "NCHW"):
            return None
        out = static(type_info(call).shape)
        if out is None:
            return None
        n, c, _, _ = xs
        co, _, kh, kw = ws
        parts = split_factor(n * out[2] * out[3], co, c * kh * kw, c, kh * kw)
        if parts == 1:
            return None
        out_dtype = str(type_info(call).dtype)
        strides, dilation = [int(v) for v in a.strides], [int(v) for v in a.dilation]
        padding = [int(v) for v in a.padding]
        partial = builder.emit_te(
            partial_sums, x, w, parts, strides, padding, dilation, out_dtype, primfunc_name_hint="conv2d_split_k"
        )
        # a call, not a binding: the sum then fuses with the epilogue that follows it
        return builder.call_te(sum_parts, partial, out_dtype, primfunc_name_hint="conv2d_split_k_sum")

    return call_rewriter("relax.nn.conv2d", split, "wsd.SplitKConv2d")


def make(target, options):
    """The pipeline's step (wsd/passes/pipeline.py)."""
    return split_k_conv2d()
