"""GroupNorm as reductions dlight schedules across the GPU, not over the batch alone.

Legalized, `R.nn.group_norm` is one kernel whose statistics are reduced inside the output
loop; dlight's GeneralReduction then spreads it over the batch only (measured on an H100:
2 workgroups for a (2, 320, 64, 64) tensor, 308 ms of SD 1.5's 748 ms UNet call, 61 calls).
Written as a mean and a variance over (N, G, C/G·H·W) and an elementwise normalization,
each statistic is a row reduction with one workgroup per (n, g), and the normalization
fuses with what follows (SiLU, the affine). The variance is taken around the mean (two
passes), as accurate as the fused form; fp16 inputs keep their statistics in fp32.

Runs before LegalizeOps, for every target: the native build runs the same graph.
"""

from __future__ import annotations


def split_group_norm():
    from tvm import relax

    from wsd.passes.ir import call_rewriter, type_info

    def split(builder, call, bound):
        x, gamma, beta = call.args
        attrs = call.attrs
        info = type_info(x)
        shape = [int(d) for d in info.shape] if getattr(info, "shape", None) is not None else None
        axes = [int(a) for a in attrs.axes]
        if shape is None or int(attrs.channel_axis) != 1 or axes != list(range(2, len(shape))):
            return None  # a layout we did not plan for: left to the fused form
        n, c, rest = shape[0], shape[1], shape[2:]
        g = int(attrs.num_groups)
        dtype = str(info.dtype)
        stats = "float32" if dtype == "float16" else dtype
        emit = builder.emit
        grouped = emit(relax.op.reshape(x, [n, g, c // g, *rest]))
        if stats != dtype:
            grouped = emit(relax.op.astype(grouped, stats))
        reduce_axes = list(range(2, 3 + len(rest)))
        mean = emit(relax.op.mean(grouped, axis=reduce_axes, keepdims=True))
        centred = emit(relax.op.subtract(grouped, mean))
        var = emit(relax.op.mean(emit(relax.op.multiply(centred, centred)), axis=reduce_axes, keepdims=True))
        eps = relax.const(float(attrs.epsilon), stats)
        normed = emit(relax.op.multiply(centred, emit(relax.op.rsqrt(emit(relax.op.add(var, eps))))))
        out = emit(relax.op.reshape(normed, shape))
        if stats != dtype:
            out = emit(relax.op.astype(out, dtype))
        per_channel = [1, c] + [1] * len(rest)
        if attrs.scale:
            out = emit(relax.op.multiply(out, emit(relax.op.reshape(gamma, per_channel))))
        if attrs.center:
            return relax.op.add(out, emit(relax.op.reshape(beta, per_channel)))
        return out

    return call_rewriter("relax.nn.group_norm", split, "wsd.SplitGroupNorm")


def make(target, options):
    """The pipeline's step (wsd/passes/pipeline.py)."""
    return split_group_norm()
