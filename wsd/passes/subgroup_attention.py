"""Attention as one kernel on tensor cores (`--subgroup-matrix`, fp16): softmax(q k^T) v without
the score matrix ever reaching memory.

Unfused, each SD 1.5 self-attention at 512² writes and reads a 16 x 4096 x 4096 f16 score matrix
three times (scores GEMM, softmax, P·V GEMM): 9.4 ms of a 49.8 ms UNet call on an H100, five
such layers (benchmarks/results/gpu-2026-12-07-s9b-sd15-float16-im2col.json). Here a graph pass
finds matmul -> softmax (last axis) -> matmul, as the capture writes SDPA (wsd/capture.py), and
calls one kernel instead:

- the WGSL the page swaps in gives each subgroup 16 query rows, each workgroup 64, and walks the
  keys twice in tiles of 32: the first pass keeps each row's running maximum and sum of
  exponentials, the second turns each score tile into probabilities (exp(s - max - log(sum)),
  rounded to f16 as the unfused softmax writes them) and multiplies them into the output on the
  tensor cores. Recomputing q k^T costs tensor-core time, which is cheap here; the score tile
  travels only through workgroup memory;
- TVM's kernel (what runs without subgroup matrices, and on the CPU) is the same two-pass
  arithmetic in TensorIR, one query row per invocation, with the same launch grid.

Measured on an H100 (docs/gpu.md, session 10): correct, but 2.06 ms per 4096-token attention
against 1.45 ms unfused, since recomputing q k^T runs at the ~38 TFLOP/s our fragments reach; so
it is opt-in (`wsd build --subgroup-matrix --fused-attention`) until a one-pass version wins.

Only fp16 graphs are fused (the fragments are f16); the head width is padded with zeros to a
multiple of 16 (SD 1.5's 40 to 48) and the padding sliced off. Shapes whose keys are not a
multiple of the tile (77 text tokens: padded keys would take part in the softmax) or whose tiles
do not fit the workgroup memory keep the unfused path (wsd/passes/subgroup_gemm.py).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from wsd.passes import subgroup_gemm as gemm
from wsd.passes.ir import CONFIG_ATTR, RULE_ATTR, call_rewriter, dtype_of, kernel_swaps, op_name, shape_of

SUBGROUPS = gemm.THREADS // gemm.SUBGROUP  # per workgroup, as gemm.entry_lines declares it
ROWS = SUBGROUPS * gemm.FRAG  # query rows per workgroup: 16 per subgroup
KEYS = 32  # keys per tile
RULE = "SubgroupMatrixAttention"
ATTR = "wsd.subgroup_attention"  # the kernel's spec (JSON) on its PrimFunc
WORKGROUP_BYTES = 32768  # what NVIDIA's Vulkan driver offers through Dawn
_PASS_THROUGH = ("relax.reshape", "relax.broadcast_to", "relax.astype")  # ops that keep each score


@dataclass(frozen=True)
class Attention:
    """out[b, m, :] = softmax(query[b, m, :] . keyt[b, :, n] over n) . value[b, n, :], with the
    head width `d` already padded to a multiple of 16."""

    batch: int
    m: int
    n: int
    d: int

    @property
    def name(self) -> str:
        return f"sattn_{self.batch}x{self.m}x{self.n}x{self.d}"

    def grid(self) -> tuple[int, int]:
        """(x, y) workgroups: x over blocks of ROWS query rows, y over the batch."""
        return self.m // ROWS, self.batch

    def workgroup_bytes(self) -> int:
        """The WGSL's workgroup memory: the key and value tiles, each subgroup's f32 scores and f16
        probabilities."""
        keys, values = self.d * (KEYS + gemm.PAD) * 2, KEYS * (self.d + gemm.PAD) * 2
        scores, probs = SUBGROUPS * gemm.FRAG * KEYS * 4, SUBGROUPS * gemm.FRAG * (KEYS + gemm.PAD) * 2
        return keys + values + scores + probs

    def fits(self) -> bool:
        return (
            self.m % ROWS == 0
            and self.n % KEYS == 0
            and self.d % gemm.FRAG == 0
            and self.workgroup_bytes() <= WORKGROUP_BYTES
        )


# --- the kernel TVM compiles (what runs without the feature) ------------------------------------


def attention_func(spec: Attention, gpu: bool):
    """The fused attention as a PrimFunc: the row maximum, the sum of exponentials and the output
    are reductions over the keys whose scores are an inline sum over the head width (so no score
    buffer); for the GPU one invocation per query row (the grid the WGSL assumes) holding the
    row's output in registers."""
    from tvm import te

    from wsd.compat import get_block, schedule_class, scheduled_attr

    b_, m_, n_, d_ = spec.batch, spec.m, spec.n, spec.d
    query = te.placeholder((b_, m_, d_), "float16", name="query")
    keyt = te.placeholder((b_, d_, n_), "float16", name="keyt")
    value = te.placeholder((b_, n_, d_), "float16", name="value")

    def score(b, m, n):
        return sum(query[b, m, i].astype("float32") * keyt[b, i, n].astype("float32") for i in range(d_))

    n1, n2, n3 = (te.reduce_axis((0, n_), name=f"n{i}") for i in (1, 2, 3))
    top = te.compute((b_, m_), lambda b, m: te.max(score(b, m, n1), axis=n1), name="rowmax")
    total = te.compute((b_, m_), lambda b, m: te.sum(te.exp(score(b, m, n2) - top[b, m]), axis=n2), name="rowsum")

    def prob(b, m, n):  # rounded to f16 as the unfused softmax writes it
        return (te.exp(score(b, m, n) - top[b, m]) / total[b, m]).astype("float16")

    probs = te.compute((b_, m_, n_), prob, name="prob")
    acc = te.compute(
        (b_, m_, d_),
        lambda b, m, i: te.sum(probs[b, m, n3].astype("float32") * value[b, n3, i].astype("float32"), axis=n3),
        name="acc",
    )
    out = te.compute((b_, m_, d_), lambda b, m, i: acc[b, m, i].astype("float16"), name="attention")
    func = te.create_prim_func([query, keyt, value, out]).without_attr("global_symbol")
    func = func.with_attr(ATTR, json.dumps(asdict(spec), sort_keys=True)).with_attr("op_pattern", 8)  # opaque
    if not gpu:
        return func
    sch = schedule_class()(func)
    b, m, i = sch.get_loops(get_block(sch, "attention"))
    blocks, row = sch.split(m, [None, ROWS])
    sch.reorder(blocks, b, row, i)
    sch.bind(blocks, "blockIdx.x")
    sch.bind(b, "blockIdx.y")
    sch.bind(row, "threadIdx.x")
    # a row's outputs accumulate in registers, key by key: each probability is computed once
    sch.compute_at(get_block(sch, "acc"), row)
    sch.set_scope(get_block(sch, "acc"), 0, "local")
    *_, i, n = sch.get_loops(get_block(sch, "acc"))
    sch.reorder(n, i)
    sch.compute_at(get_block(sch, "prob"), n)
    sch.set_scope(get_block(sch, "prob"), 0, "local")
    for name in ("rowsum", "rowmax"):  # once per row, before the row's outputs
        sch.compute_at(get_block(sch, name), row)
        sch.set_scope(get_block(sch, name), 0, "local")
    config = f"{ROWS} rows x {KEYS} keys"
    return sch.mod["main"].with_attr(scheduled_attr(), True).with_attr(RULE_ATTR, RULE).with_attr(CONFIG_ATTR, config)


# --- the graph pass --------------------------------------------------------------------------


def _through(bound, expr):
    """What `expr` is computed from, past aliases and the ops that keep each value (reshapes,
    same-size broadcasts, casts)."""
    from tvm import relax

    while True:
        source = bound(expr)
        if isinstance(source, relax.Var):  # an alias
            expr = source
        elif op_name(source) in _PASS_THROUGH and (
            op_name(source) != "relax.broadcast_to" or shape_of(source) == shape_of(source.args[0])
        ):
            expr = source.args[0]
        else:
            return expr


def subgroup_attention_pass(gpu: bool = True):
    """matmul(softmax(matmul(q, kt), axis=-1), v) in fp16, batched on both sides, becomes one
    fused attention kernel where the shapes fit."""
    import tvm
    from tvm import relax

    from wsd.compat import tensor_info

    def rewrite(builder, call, bound):
        probs, value = call.args
        softmax = bound(_through(bound, probs))
        if op_name(softmax) != "relax.nn.softmax":
            return None
        rank = len(shape_of(softmax) or ())
        if int(softmax.attrs.axis) not in (-1, rank - 1):
            return None
        scores = bound(_through(bound, softmax.args[0]))
        if op_name(scores) != "relax.matmul":
            return None
        query, keyt = scores.args
        shapes = [shape_of(e) for e in (query, keyt, value, scores, probs, call)]
        if any(s is None or len(s) != 3 for s in shapes):
            return None
        (batch, m, d), (_, dk, n), (_, nv, dv) = shapes[:3]
        if not (shapes[3] == shapes[4] == [batch, m, n] and dk == d and nv == n and shapes[5] == [batch, m, dv]):
            return None
        if any(dtype_of(e) != "float16" for e in (query, keyt, value, call)) or dv != d:
            return None
        dp = -(-d // gemm.FRAG) * gemm.FRAG
        spec = Attention(batch, m, n, dp)
        if not spec.fits():
            return None
        operands = (gemm.pad_to(builder, query, {2: dp}), gemm.pad_to(builder, keyt, {1: dp}))
        operands += (gemm.pad_to(builder, value, {2: dp}),)
        gvar = builder.add_func(attention_func(spec, gpu), spec.name)
        out = builder.emit(relax.call_tir(gvar, list(operands), tensor_info((batch, m, dp), "float16")))
        if dp == d:
            return out
        return relax.op.strided_slice(out, axes=[2], begin=[0], end=[d])

    fuse = call_rewriter("relax.matmul", rewrite, "wsd.SubgroupAttentionFuse")
    return tvm.transform.Sequential([fuse, relax.transform.DeadCodeElimination()], name="wsd.SubgroupAttention")


# --- the WGSL the page swaps in -------------------------------------------------------------


def _copies(spec: Attention, values: bool) -> list[tuple[str, str, int, str, str]]:
    """The key tile's (and the value tile's) copy into workgroup memory, as (source vec4 index,
    destination half index, vec4s in the tile, workgroup array, parameter) for the `e`-th vec4."""
    n8, d8 = spec.n // 8, spec.d // 8
    k8 = KEYS // 8
    keys = (
        f"kbase + (e / {k8}u) * {n8}u + n0 / 8u + e % {k8}u",
        f"(e / {k8}u) * {KEYS + gemm.PAD}u + (e % {k8}u) * 8u",
    )
    out = [(*keys, spec.d * KEYS // 8, "Ks", "keyt")]
    if values:
        rows = (
            f"vbase + (n0 + e / {d8}u) * {d8}u + e % {d8}u",
            f"(e / {d8}u) * {spec.d + gemm.PAD}u + (e % {d8}u) * 8u",
        )
        out.append((*rows, KEYS * spec.d // 8, "Vs", "value"))
    return out


def attention_wgsl(spec: Attention, entry: str, compiled: str) -> str:
    """WGSL computing the fused attention with subgroup matrices, for the kernel TVM compiled as
    `compiled`: its bindings (keys, values and output retyped as vec4<u32> for 16-byte copies),
    its grid-packing uniform and its grid are kept."""
    t, frags = gemm.FRAG, spec.d // gemm.FRAG
    names = gemm.storage_bindings(compiled, entry, ("attention", "keyt", "query", "value"))
    out, keyt, query, value = (names[n] for n in ("attention", "keyt", "query", "value"))
    lmat, rmat = f"subgroup_matrix_left<f16, {t}, {t}>", f"subgroup_matrix_right<f16, {t}, {t}>"
    cmat = f"subgroup_matrix_result<f32, {t}, {t}>"
    ks, vs, ps = KEYS + gemm.PAD, spec.d + gemm.PAD, KEYS + gemm.PAD
    scores = f"sg * {t * KEYS}u"  # where this subgroup's rows of Ss start
    lines = gemm.preamble(compiled, retyped=(out, keyt, value))
    lines += [
        "",
        f"var<workgroup> Ks : array<f16, {spec.d * ks}>;",
        f"var<workgroup> Vs : array<f16, {KEYS * vs}>;",
        f"var<workgroup> Ss : array<f32, {SUBGROUPS * t * KEYS}>;",
        f"var<workgroup> Ps : array<f16, {SUBGROUPS * t * ps}>;",
        "",
        *gemm.entry_lines(entry, compiled),
        "  let b = blockIdx.y;",
        f"  let r0 = (blockIdx.z * gridDim.x + blockIdx.x) * {ROWS}u + sg * {t}u;",  # this subgroup's rows
        f"  let kbase = b * {spec.d * spec.n // 8}u;",
        f"  let vbase = b * {spec.n * spec.d // 8}u;",
        "  let row = lane % 16u;",
        f"  let col0 = (lane / 16u) * {KEYS // 2}u;",
        f"  let srow = {scores} + row * {KEYS}u;",  # this lane's row of scores
        f"  let prow = sg * {t * ps}u;",
    ]
    qat = f"b * {spec.m * spec.d}u + r0 * {spec.d}u"
    lines += [
        f"  let q{i} = subgroupMatrixLoad<{lmat}>(&{query}, {qat} + {i * t}u, false, {spec.d}u);" for i in range(frags)
    ]
    lines += ["  var mx = f32(-3.0e38);", "  var total = f32(0.0);"]

    def tile(values: bool) -> list[str]:
        """One key tile into workgroup memory and its scores into this subgroup's rows of Ss."""
        body = []
        for src, dst, count, arr, buf in _copies(spec, values):
            name = names[buf]
            for q in range(-(-count // gemm.THREADS)):
                e = f"li + {q * gemm.THREADS}u"
                body += [f"if ({e} < {count}u) {{", f"  let e = {e};", f"  let w = {name}[{src}];", f"  let d = {dst};"]
                body += [f"  {x}" for x in gemm.halves_into(arr, [f"w[{h}]" for h in range(4)])]
                body.append("}")
        body.append("workgroupBarrier();")
        for j in range(KEYS // t):
            body.append(f"var s{j} = {cmat}();")
            for i in range(frags):
                at = f"{i * t * ks}u + {j * t}u"
                key = f"subgroupMatrixLoad<{rmat}>(&Ks, {at}, false, {ks}u)"
                body.append(f"s{j} = subgroupMatrixMultiplyAccumulate(q{i}, {key}, s{j});")
            body.append(f"subgroupMatrixStore(&Ss, {scores} + {j * t}u, s{j}, false, {KEYS}u);")
        body.append("workgroupBarrier();")
        return body

    # pass 1: each row's maximum and sum of exponentials, rescaled as the maximum grows; a lane
    # takes row lane % 16 and half of each tile's keys (from col0), in an order rotated by the row
    # so that the 32 lanes read 32 different banks
    half = KEYS // 2
    at = f"srow + col0 + (c + row) % {half}u"
    lines.append(f"  for (var n0 = 0u; n0 < {spec.n}u; n0 += {KEYS}u) {{")
    lines += [f"    {x}" for x in tile(values=False)]
    lines += [
        "    var top = mx;",
        f"    for (var c = 0u; c < {half}u; c += 1u) {{",
        f"      top = max(top, Ss[{at}]);",
        "    }",
        "    var part = f32(0.0);",
        f"    for (var c = 0u; c < {half}u; c += 1u) {{",
        f"      part = part + exp(Ss[{at}] - top);",
        "    }",
        "    total = total * exp(mx - top) + part;",
        "    mx = top;",
        "    workgroupBarrier();",  # the next tile overwrites Ks and Ss
        "  }",
        # the two halves of each row meet through Ss, free until pass 2's first scores
        f"  Ss[{scores} + lane * 2u] = mx;",
        f"  Ss[{scores} + lane * 2u + 1u] = total;",
        "  workgroupBarrier();",
        f"  let mo = Ss[{scores} + ((lane + 16u) % 32u) * 2u];",
        f"  let to = Ss[{scores} + ((lane + 16u) % 32u) * 2u + 1u];",
        "  let top = max(mx, mo);",
        "  let shift = top + log(total * exp(mx - top) + to * exp(mo - top));",  # exp(s - shift) = softmax
    ]
    lines += [f"  var o{i} = {cmat}();" for i in range(frags)]
    # pass 2: probabilities (f16, as the unfused softmax writes them) times the value tile
    lines.append(f"  for (var n0 = 0u; n0 < {spec.n}u; n0 += {KEYS}u) {{")
    lines += [f"    {x}" for x in tile(values=True)]
    lines += [
        f"    for (var c = 0u; c < {half}u; c += 1u) {{",
        f"      let j = col0 + (c + row) % {half}u;",
        f"      Ps[prow + row * {ps}u + j] = f16(exp(Ss[srow + j] - shift));",
        "    }",
        "    workgroupBarrier();",
    ]
    for kc in range(0, KEYS, t):
        lines.append(f"    let p{kc} = subgroupMatrixLoad<{lmat}>(&Ps, prow + {kc}u, false, {ps}u);")
        for i in range(frags):
            at = f"{kc * vs}u + {i * t}u"
            val = f"subgroupMatrixLoad<{rmat}>(&Vs, {at}, false, {vs}u)"
            lines.append(f"    o{i} = subgroupMatrixMultiplyAccumulate(p{kc}, {val}, o{i});")
    lines += ["    workgroupBarrier();", "  }"]
    # f32 results to f16 through this subgroup's rows of Ss: one 16-byte store per lane
    obase = f"(b * {spec.m * spec.d}u + (r0 + lane / 2u) * {spec.d}u) / 8u + lane % 2u"
    for i in range(frags):
        lines += gemm.half_store("Ss", scores, f"o{i}", out, f"{obase} + {i * t // 8}u")
    lines.append("}")
    return "\n".join(lines) + "\n"


def overrides(mod, shaders: dict[str, str]) -> dict[str, str]:
    """Entry point -> subgroup-matrix WGSL, for each fused attention kernel of a scheduled module."""

    def write(fields, entry, compiled):
        return attention_wgsl(Attention(**fields), entry, compiled)

    return kernel_swaps(mod, shaders, ATTR, write)


def make(target, options):
    """The pipeline's step (wsd/passes/pipeline.py): the CPU build gets the kernel unscheduled."""
    return subgroup_attention_pass(gpu=target.kind.name != "llvm")
