"""GroupNorm as partial sums spread across the GPU, and one elementwise normalization.

Legalized, `R.nn.group_norm` is one kernel whose statistics are reduced inside the output
loop; dlight's GeneralReduction then spreads it over the batch only (measured on an H100:
2 workgroups for a (2, 320, 64, 64) tensor, 308 ms of SD 1.5's 748 ms UNet call, 61 calls).
Written as plain mean/variance ops it was better but still slow: FuseOps joined each statistic
with the full-size subtraction after it, so one workgroup per (n, group) wrote a full f32 copy
of the input, four of them per GroupNorm (the H100 profile of 2026-12-07: ~125 us a call).

Here each statistic is two kernels: partial sums over parts of at most CHUNK elements (one
workgroup per (n, group, part), 1280 for SD 1.5's top level; a schedule of our own, as dlight
leaves them to Fallback), then a tiny kernel that adds the parts. Those kernels are opaque, so
nothing full-size is fused to them. The variance is taken around the mean (two passes over the
input, never written back). The normalization is elementwise and fuses with what follows (the
affine, SiLU). fp16 inputs keep their statistics in fp32.

Runs before LegalizeOps, for every target: the native build runs the same graph (unscheduled).
"""

from __future__ import annotations

import math

from wsd.passes.ir import RULE_ATTR

THREADS = 256  # per workgroup of the partial sums
RULE = "GroupStatistics"  # kernels.json's rule for them
CHUNK = 2048  # elements per partial sum: a (2, 320, 64, 64) GroupNorm's statistics get 1280 rows


def chunks(size: int) -> int:
    """How many equal parts a group's `size` elements are summed in: the fewest of at most CHUNK."""
    return next(p for p in range(1, size + 1) if size % p == 0 and size // p <= CHUNK)


def _partial_sums(x, groups: int, parts: int, stats: str, mean=None):
    """out[n, g, p]: the sum of part p of group g's elements (cast to `stats`), or of their squared
    distances from `mean[n, g, 0]`. Reads x (N, C, *spatial) in place: a group is C/G whole channels,
    contiguous, so part p covers positions p*L .. p*L+L-1 of the group's flattened elements."""
    from tvm import te

    n, c, *rest = (int(d) for d in x.shape)
    spatial = math.prod(rest)
    per_group = c // groups * spatial
    length = per_group // parts
    r = te.reduce_axis((0, length), name="r")

    def at(b, g, p):
        i = p * length + r
        pos, index = i % spatial, []
        for d in reversed(rest):  # the position within a channel, unravelled
            index.append(pos % d)
            pos = pos // d
        v = x[(b, g * (c // groups) + i // spatial, *reversed(index))].astype(stats)
        if mean is not None:
            v = (v - mean[b, g, 0]) * (v - mean[b, g, 0])
        return te.sum(v, axis=r)

    return te.compute((n, groups, parts), at, name="group_sq_sums" if mean is not None else "group_sums")


def _group_stat(partial, size: int, eps: float | None = None):
    """out[n, g, 0]: the mean of a group's `size` elements from its partial sums, or with `eps` the
    reciprocal standard deviation from the partial sums of squared distances."""
    from tvm import te

    from wsd.compat import tir

    tirx = tir()
    parts = int(partial.shape[2])
    r = te.reduce_axis((0, parts), name="p")
    total = te.compute((*partial.shape[:2], 1), lambda b, g, _: te.sum(partial[b, g, r], axis=r), name="total")
    scale = tirx.const(1.0 / size, partial.dtype)
    if eps is None:
        return te.compute(total.shape, lambda *i: total(*i) * scale, name="mean")
    eps_ = tirx.const(eps, partial.dtype)
    return te.compute(total.shape, lambda *i: tirx.rsqrt(total(*i) * scale + eps_), name="rstd")


def _rows_per_workgroup(prim, name: str):
    """The partial sums' schedule: one workgroup per (n, g, part), up to THREADS threads summing
    every THREADS-th element (adjacent threads read adjacent elements), then across the workgroup.
    dlight's rules leave these reductions to Fallback (one thread per output: a serial loop of 2048)."""
    from wsd.compat import get_block, schedule_class, scheduled_attr

    sch = schedule_class()(prim)
    block = get_block(sch, name)
    b, g, p, r = sch.get_loops(block)
    # as many threads as divide the part: no predicated tail (parts are 2048 or 1280 in SD)
    lanes = math.gcd(int(sch.get(r).extent), THREADS)
    outer, lane = sch.split(r, [None, lanes])
    sch.reorder(lane, outer)
    sch.bind(sch.fuse(b, g, p), "blockIdx.x")
    sch.bind(lane, "threadIdx.x")
    return sch.mod["main"].with_attr(scheduled_attr(), True).with_attr(RULE_ATTR, RULE)


def _thread_per_group(prim, name: str):
    """The finishing kernels' schedule: one thread per (n, g) adds its parts, then scales (and takes
    rsqrt). dlight's Reduction inlined that epilogue into the sum's init where a group had one part
    (rsqrt of eps, then rsqrt again: wrong), so these are scheduled here too."""
    from wsd.compat import get_block, schedule_class, scheduled_attr

    sch = schedule_class()(prim)
    total, out = get_block(sch, "total"), get_block(sch, name)
    b, g, one, _ = sch.get_loops(total)
    block_x, thread_x = sch.split(sch.fuse(b, g, one), [None, 64])
    sch.bind(block_x, "blockIdx.x")
    sch.bind(thread_x, "threadIdx.x")
    sch.reverse_compute_at(out, thread_x)
    sch.set_scope(total, 0, "local")
    return sch.mod["main"].with_attr(scheduled_attr(), True).with_attr(RULE_ATTR, RULE)


def _call_opaque(builder, func, args, name: str, schedule=None):
    """`func`'s TE as its own kernel, scheduled by `schedule` (None: unscheduled, the CPU build):
    opaque, so FuseOps joins no consumer to it (a statistic fused with the full-size normalization
    would write it from one workgroup per group)."""
    from tvm import relax, te

    from wsd.compat import tensor_info
    from wsd.passes.ir import dtype_of, shape_of

    tensors = [te.placeholder(shape_of(a), dtype_of(a)) for a in args]
    out = func(*tensors)
    prim = te.create_prim_func([*tensors, out]).without_attr("global_symbol")
    if schedule is not None:
        prim = schedule(prim, out.op.name)
    gvar = builder.add_func(prim.with_attr("op_pattern", 8), name)
    return builder.emit(relax.call_tir(gvar, list(args), tensor_info([int(d) for d in out.shape], str(out.dtype))))


def split_group_norm(gpu: bool = True):
    """`gpu`: the statistics' kernels get their GPU schedules (the CPU build runs them unscheduled)."""
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
        size = c // g * math.prod(rest)
        parts = chunks(size)
        emit = builder.emit
        rows, per_group = (_rows_per_workgroup, _thread_per_group) if gpu else (None, None)
        sums = _call_opaque(builder, lambda v: _partial_sums(v, g, parts, stats), [x], "group_sums", rows)
        mean = _call_opaque(builder, lambda p: _group_stat(p, size), [sums], "group_mean", per_group)
        squares = _call_opaque(
            builder, lambda v, m: _partial_sums(v, g, parts, stats, m), [x, mean], "group_sq_sums", rows
        )
        eps = float(attrs.epsilon)
        rstd = _call_opaque(builder, lambda p: _group_stat(p, size, eps), [squares], "group_rstd", per_group)
        # the normalization is elementwise: it fuses with the affine, the SiLU, whatever follows
        grouped = emit(relax.op.reshape(x, [n, g, -1]))
        if stats != dtype:
            grouped = emit(relax.op.astype(grouped, stats))
        out = emit(relax.op.reshape(emit(relax.op.multiply(emit(relax.op.subtract(grouped, mean)), rstd)), shape))
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
    return split_group_norm(gpu=target.kind.name != "llvm")
