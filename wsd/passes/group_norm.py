"""GroupNorm as partial sums spread across the GPU, and one elementwise normalization.

Legalized, `R.nn.group_norm` is one kernel whose statistics are reduced inside the output
loop; dlight's GeneralReduction then spreads it over the batch only (measured on an H100:
2 workgroups for a (2, 320, 64, 64) tensor, 308 ms of SD 1.5's 748 ms UNet call, 61 calls).
Written as plain mean/variance ops it was better but still slow: FuseOps joined each statistic
with the full-size subtraction after it, so one workgroup per (n, group) wrote a full f32 copy
of the input, four of them per GroupNorm (the H100 profile of 2026-12-07: ~125 us a call).

Here the statistics are two kernels: partial sums over parts of at most CHUNK elements (one
workgroup per (n, group, part), 1280 for SD 1.5's top level; a schedule of our own, as dlight
leaves them to Fallback), then a tiny kernel that combines the parts into the mean and the
reciprocal standard deviation. Those kernels are opaque, so nothing full-size is fused to them.
Each part sums d and d*d in one pass, d = x minus the part's first value (a shift that keeps the
squares from cancelling where the mean is large beside the spread); the combination adds each
part's squared deviations and its distance from the group's mean (Chan, Golub and LeVeque). It
was four kernels (sums, mean, squared distances from it, rstd): 244 of the SD 1.5 UNet's 1,210
dispatches, ~9 us each on an H100 however small. The normalization is elementwise and fuses
with what follows (the affine, SiLU). fp16 inputs keep their statistics in fp32.

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


def _part_sums(x, groups: int, parts: int, stats: str):
    """(S, Q)[n, g, p]: the sums of d and d*d over part p of group g's elements, d = x - x0 where
    x0 is the part's first element (cast to `stats`). Shifted by a value of its own data, the
    sum of squares does not cancel as a plain one does where the mean is large beside the spread.
    Reads x (N, C, *spatial) in place: a group is C/G whole channels, contiguous, so part p covers
    positions p*L .. p*L+L-1 of the group's flattened elements."""
    from tvm import te

    n, c, *rest = (int(d) for d in x.shape)
    length = c // groups * math.prod(rest) // parts
    r = te.reduce_axis((0, length), name="r")
    pair = te.comm_reducer(
        lambda a, b: (a[0] + b[0], a[1] + b[1]),
        lambda t0, t1: (te.const(0, t0), te.const(0, t1)),
        name="sum_and_squares",
    )

    def at(b, g, p):
        d = _element(x, groups, b, g, p * length + r).astype(stats) - _element(x, groups, b, g, p * length).astype(
            stats
        )
        return pair((d, d * d), axis=r)

    return te.compute((n, groups, parts), at, name="group_sums")


def _element(x, groups: int, b, g, i):
    """x's i-th element of group g in batch b (the group's channels flattened)."""
    n, c, *rest = (int(d) for d in x.shape)
    spatial = math.prod(rest)
    pos, index = i % spatial, []
    for d in reversed(rest):  # the position within a channel, unravelled
        index.append(pos % d)
        pos = pos // d
    return x[(b, g * (c // groups) + i // spatial, *reversed(index))]


def _group_stats(x, sums, squares, eps: float):
    """out[n, g, 0]: a group's mean, out[n, g, 1]: its reciprocal standard deviation, from its
    parts' shifted sums: each part's mean and squared deviations, combined (Chan et al.)."""
    from tvm import te

    from wsd.compat import tir

    tirx = tir()
    groups, parts = (int(d) for d in sums.shape[1:])
    n, c, *rest = (int(d) for d in x.shape)
    length = c // groups * math.prod(rest) // parts
    dtype = sums.dtype
    inv_length = tirx.const(1.0 / length, dtype)

    def part_mean(b, g, p):
        return _element(x, groups, b, g, p * length).astype(dtype) + sums[b, g, p] * inv_length

    p = te.reduce_axis((0, parts), name="p")
    inv_parts = tirx.const(1.0 / parts, dtype)
    mean = te.compute((n, groups), lambda b, g: te.sum(part_mean(b, g, p) * inv_parts, axis=p), name="mean")
    q = te.reduce_axis((0, parts), name="q")

    def deviations(b, g):
        spread = part_mean(b, g, q) - mean[b, g]
        own = squares[b, g, q] - sums[b, g, q] * sums[b, g, q] * inv_length
        return te.sum(own + spread * spread * tirx.const(length, dtype), axis=q)

    m2 = te.compute((n, groups), deviations, name="m2")
    scale, eps_ = tirx.const(1.0 / (parts * length), dtype), tirx.const(eps, dtype)
    return te.compute(
        (n, groups, 2),
        lambda b, g, k: tirx.Select(k == 0, mean[b, g], tirx.rsqrt(m2[b, g] * scale + eps_)),
        name="group_stats",
    )


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
    """The finishing kernel's schedule: one thread per (n, g) combines its parts (the mean, then
    the deviations around it). dlight's Reduction inlined a finishing epilogue into the sum's init
    where a group had one part (rsqrt of eps, then rsqrt again: wrong), so this is scheduled here."""
    from wsd.compat import get_block, schedule_class, scheduled_attr

    sch = schedule_class()(prim)
    mean, m2, out = (get_block(sch, n) for n in ("mean", "m2", name))
    b, g, _ = sch.get_loops(out)
    block_x, thread_x = sch.split(sch.fuse(b, g), [None, 64])
    sch.bind(block_x, "blockIdx.x")
    sch.bind(thread_x, "threadIdx.x")
    for block in (m2, mean):  # m2 reads the mean: it goes in first, the mean before it
        sch.compute_at(block, thread_x)
        sch.set_scope(block, 0, "local")
    return sch.mod["main"].with_attr(scheduled_attr(), True).with_attr(RULE_ATTR, RULE)


def _call_opaque(builder, func, args, name: str, schedule=None):
    """`func`'s TE as its own kernel, scheduled by `schedule` (None: unscheduled, the CPU build):
    opaque, so FuseOps joins no consumer to it (a statistic fused with the full-size normalization
    would write it from one workgroup per group)."""
    from tvm import relax, te

    from wsd.compat import tensor_info
    from wsd.passes.ir import dtype_of, shape_of

    tensors = [te.placeholder(shape_of(a), dtype_of(a)) for a in args]
    made = func(*tensors)
    outs = list(made) if isinstance(made, list | tuple) else [made]
    prim = te.create_prim_func([*tensors, *outs]).without_attr("global_symbol")
    if schedule is not None:
        prim = schedule(prim, outs[0].op.name)
    gvar = builder.add_func(prim.with_attr("op_pattern", 8), name)
    infos = [tensor_info([int(d) for d in out.shape], str(out.dtype)) for out in outs]
    called = builder.emit(relax.call_tir(gvar, list(args), infos if len(outs) > 1 else infos[0]))
    if len(outs) == 1:
        return called
    return [builder.emit(relax.TupleGetItem(called, i)) for i in range(len(outs))]


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
        sums, squares = _call_opaque(builder, lambda v: _part_sums(v, g, parts, stats), [x], "group_sums", rows)
        eps = float(attrs.epsilon)
        group_stats = _call_opaque(
            builder, lambda v, s, q: _group_stats(v, s, q, eps), [x, sums, squares], "group_stats", per_group
        )
        mean, rstd = (emit(relax.op.strided_slice(group_stats, axes=[2], begin=[i], end=[i + 1])) for i in (0, 1))
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
