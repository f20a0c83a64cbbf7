"""GEMMs on tensor cores through WebGPU's subgroup matrices (`--subgroup-matrix`).

Dawn exposes NVIDIA's tensor cores to WGSL as `chromium-experimental-subgroup-matrix`
(16x16x16 f16 tiles, VK_KHR_cooperative_matrix underneath). On an H100 an fp16 GEMM that loads
its 16x16 fragments straight from the storage buffers ran at 58-69 TFLOP/s at the UNet's
shapes, against 18-23 TFLOP/s for fp16 FMAs (benchmarks/results/gpu-2026-12-05-subgroup-matrix-
probe.json); fragments staged through workgroup memory the way TVM schedules GEMMs ran slower
than FMAs. TVM's WebGPU codegen knows no such types, so:

- a graph pass turns each conv2d and matmul whose shapes fit the 16x16 fragments into a plain
  GEMM over materialized operands: a conv becomes an im2col gather (B, K, Ho*Wo) and the GEMM
  W[O, K] x cols[b] = out[b, O, Ho*Wo], which is NCHW as it stands; a 1x1 stride-1 conv reads
  its input as the right matrix directly, and a linear layer reads its weight column-major;
- each GEMM is an opaque kernel with a plain TIR schedule (one workgroup of 32 threads per output
  tile, a serial K loop per output): what runs on an adapter without subgroup matrices, slowly;
- the build writes, per GEMM kernel, WGSL with the same bindings and launch grid that computes the
  tile with subgroup matrices (shaders/subgroup-matrix.json); the page swaps it in for TVM's
  when the device has the feature (web/lib/session.js).

The epilogue (bias, residual) is not fused into the GEMM: it runs as the elementwise kernel FuseOps
makes of what follows, one extra pass over the output. Shapes that do not fit (the UNet's first and
last convs, attention with 40-wide heads) keep TVM's path.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass

from wsd.passes.ir import CONFIG_ATTR, RULE_ATTR, call_rewriter, dtype_of, is_prim_func, op_name, shape_of

FRAG = 16  # the fragment edge: f16 16x16x16 is offered by every adapter seen (NVIDIA; Apple's is 8x8)
SUBGROUP = 32  # one subgroup per workgroup: every fragment offset derives from the workgroup id,
# which Tint's uniformity analysis requires of subgroupMatrixLoad/Store
RULE = "SubgroupMatrixGemm"
ATTR = "wsd.subgroup_gemm"  # the GEMM's spec (JSON) on its PrimFunc
FEATURE = "chromium-experimental-subgroup-matrix"
# Workgroups that keep an H100's 132 SMs busy: below it a 64x64 tile gives way to 32x32 (probe:
# the 1280-channel 16x16-level conv, 160 tiles of 64x64, ran at 18 TFLOP/s, at 24 on 32x32).
MIN_TILES = 512


@dataclass(frozen=True)
class Gemm:
    """out[b, m, n] = sum_k left[b?, m, k] * right[b?, k, n]; row-major unless `right_nk`
    (right stored as [N, K]: column-major). A side without `_batched` is shared by every b."""

    batch: int
    m: int
    n: int
    k: int
    dtype: str
    left_batched: bool
    right_batched: bool
    right_nk: bool
    tile_m: int = 0
    tile_n: int = 0

    def with_tile(self) -> Gemm:
        """The largest tile (64, 32 or 16 per side; squarer first: fewer fragment loads per
        multiply) that divides the output and gives MIN_TILES workgroups; where none does, the
        one that gives the most."""
        fits = [(tm, tn) for tm in (64, 32, 16) for tn in (64, 32, 16) if self.m % tm == 0 and self.n % tn == 0]
        full = [t for t in fits if self.batch * (self.m // t[0]) * (self.n // t[1]) >= MIN_TILES]
        if full:
            tm, tn = max(full, key=lambda t: (t[0] * t[1], min(t)))
        else:
            tm, tn = min(fits, key=lambda t: (t[0] * t[1], -min(t)))
        return Gemm(**{**asdict(self), "tile_m": tm, "tile_n": tn})

    @property
    def name(self) -> str:
        layout = "nk" if self.right_nk else "kn"
        return f"sgemm_{self.batch}x{self.m}x{self.n}x{self.k}_{layout}"

    def grid(self) -> tuple[int, int]:
        """(x, y) workgroups: x over N tiles, y over batch x M tiles."""
        return self.n // self.tile_n, self.batch * (self.m // self.tile_m)


def fits(m: int, n: int, k: int) -> bool:
    return min(m, n, k) >= FRAG and m % FRAG == 0 and n % FRAG == 0 and k % FRAG == 0


# --- the kernel TVM compiles (what runs without the feature) ------------------------------------


def gemm_func(spec: Gemm, gpu: bool):
    """The GEMM as a PrimFunc: for the GPU, scheduled with the launch grid of the subgroup-matrix
    WGSL (x: N tiles, y: batch x M tiles, 32 threads); unscheduled for the CPU."""
    from tvm import te

    from wsd.compat import get_block, schedule_class, scheduled_attr

    left = te.placeholder((spec.batch if spec.left_batched else 1, spec.m, spec.k), spec.dtype, name="left")
    rshape = (spec.n, spec.k) if spec.right_nk else (spec.k, spec.n)
    right = te.placeholder((spec.batch if spec.right_batched else 1, *rshape), spec.dtype, name="right")
    r = te.reduce_axis((0, spec.k), name="k")

    def at(b, i, j):
        lb = b if spec.left_batched else 0
        rb = b if spec.right_batched else 0
        rv = right[rb, j, r] if spec.right_nk else right[rb, r, j]
        return te.sum(left[lb, i, r] * rv, axis=r)

    out = te.compute((spec.batch, spec.m, spec.n), at, name="gemm")
    func = te.create_prim_func([left, right, out]).without_attr("global_symbol")  # private, like emit_te's
    func = func.with_attr(ATTR, json.dumps(asdict(spec), sort_keys=True)).with_attr("op_pattern", 8)  # opaque
    if not gpu:
        return func
    sch = schedule_class()(func)
    block = get_block(sch, "gemm")
    b, i, j, k = sch.get_loops(block)
    io, ii = sch.split(i, [None, spec.tile_m])
    jo, ji = sch.split(j, [None, spec.tile_n])
    sch.reorder(b, io, jo, ii, ji, k)
    sch.bind(sch.fuse(b, io), "blockIdx.y")
    sch.bind(jo, "blockIdx.x")
    outer, lane = sch.split(sch.fuse(ii, ji), [None, SUBGROUP])
    sch.reorder(lane, outer)
    sch.bind(lane, "threadIdx.x")
    config = f"{spec.tile_m}x{spec.tile_n} tile, one subgroup"
    return sch.mod["main"].with_attr(scheduled_attr(), True).with_attr(RULE_ATTR, RULE).with_attr(CONFIG_ATTR, config)


# --- the graph pass --------------------------------------------------------------------------


def _call_gemm(builder, spec: Gemm, left, right, gpu: bool):
    from tvm import relax

    from wsd.compat import tensor_info

    spec = spec.with_tile()
    gvar = builder.add_func(gemm_func(spec, gpu), spec.name)
    out = tensor_info((spec.batch, spec.m, spec.n), spec.dtype)
    return builder.emit(relax.call_tir(gvar, [left, right], out))


def _im2col(x, kh, kw, strides, padding, dilation):
    """cols[b, (c, i, j), (ho, wo)]: the conv's right matrix, row-major K x N per batch."""
    from tvm import te

    from wsd.compat import tir

    tirx = tir()
    n, c, h, w = (int(d) for d in x.shape)
    top, left, bottom, right = padding
    ho = (h + top + bottom - (kh - 1) * dilation[0] - 1) // strides[0] + 1
    wo = (w + left + right - (kw - 1) * dilation[1] - 1) // strides[1] + 1

    def at(b, kk, p):
        ci, rest = kk // (kh * kw), kk % (kh * kw)
        y = (p // wo) * strides[0] + (rest // kw) * dilation[0] - top
        xx = (p % wo) * strides[1] + (rest % kw) * dilation[1] - left
        inside = tirx.all(y >= 0, y < h, xx >= 0, xx < w)
        return tirx.if_then_else(inside, x[b, ci, y, xx], tirx.const(0, x.dtype))

    return te.compute((n, c * kh * kw, ho * wo), at, name="im2col")


def subgroup_gemm_pass(gpu: bool = True):
    """conv2d and matmul calls whose shapes fit the fragments become im2col + GEMM kernels."""
    import tvm
    from tvm import relax

    def conv(builder, call, bound):
        a = call.attrs
        x, w = call.args
        xs, ws, out = shape_of(x), shape_of(w), shape_of(call)
        dtype = dtype_of(call)
        if None in (xs, ws, out) or int(a.groups) != 1 or not (dtype_of(x) == dtype_of(w) == dtype):
            return None
        if (str(a.data_layout), str(a.kernel_layout), str(a.out_layout) or "NCHW") != ("NCHW", "OIHW", "NCHW"):
            return None
        batch, c, h, wd = xs
        o, _, kh, kw = ws
        ho, wo = out[2], out[3]
        k = c * kh * kw
        if not fits(o, ho * wo, k):
            return None
        strides, dilation = [int(v) for v in a.strides], [int(v) for v in a.dilation]
        padding = [int(v) for v in a.padding]
        weight = builder.emit(relax.op.reshape(w, (1, o, k)))
        if (kh, kw) == (1, 1) and strides == [1, 1] and not any(padding):
            cols = builder.emit(relax.op.reshape(x, (batch, c, h * wd)))  # already K x N per batch
        else:
            cols = builder.emit_te(_im2col, x, kh, kw, strides, padding, dilation, primfunc_name_hint="im2col")
        spec = Gemm(batch, o, ho * wo, k, dtype, left_batched=False, right_batched=True, right_nk=False)
        return relax.op.reshape(_call_gemm(builder, spec, weight, cols, gpu), out)

    def matmul(builder, call, bound):
        x, y = call.args
        xs, ys, out = shape_of(x), shape_of(y), shape_of(call)
        dtype = dtype_of(call)
        if None in (xs, ys, out) or len(xs) < 2 or len(ys) < 2 or not (dtype_of(x) == dtype_of(y) == dtype):
            return None
        k = xs[-1]
        source, nk = y, False
        transposed = bound(y)
        if op_name(transposed) == "relax.permute_dims" and shape_of(transposed.args[0]) is not None:
            rank = len(ys)
            given = transposed.attrs.axes
            axes = [int(v) for v in given] if given is not None else list(range(rank))[::-1]  # None: reversed
            if axes == [*range(rank - 2), rank - 1, rank - 2]:
                source, nk = transposed.args[0], True  # y = W^T: read W column-major, no transpose kernel
        n = ys[-1]
        if len(ys) == 2:  # a shared right matrix (a linear layer's weight): every row of x is one M row
            m, batch = math.prod(xs[:-1]), 1
            left = builder.emit(relax.op.reshape(x, (1, m, k)))
            right_batched = False
        elif len(xs) == len(ys) and xs[:-2] == ys[:-2]:  # batched on both sides (attention)
            m, batch = xs[-2], math.prod(xs[:-2])
            left = builder.emit(relax.op.reshape(x, (batch, m, k)))
            right_batched = True
        else:
            return None
        if not fits(m, n, k):
            return None
        rshape = (n, k) if nk else (k, n)
        right = builder.emit(relax.op.reshape(source, (batch if right_batched else 1, *rshape)))
        spec = Gemm(batch, m, n, k, dtype, left_batched=True, right_batched=right_batched, right_nk=nk)
        return relax.op.reshape(_call_gemm(builder, spec, left, right, gpu), out)

    convs = call_rewriter("relax.nn.conv2d", conv, "wsd.SubgroupGemmConv2d")
    matmuls = call_rewriter("relax.matmul", matmul, "wsd.SubgroupGemmMatmul")
    return tvm.transform.Sequential([convs, matmuls, relax.transform.DeadCodeElimination()], name="wsd.SubgroupGemm")


# --- the WGSL the page swaps in -------------------------------------------------------------

_BINDING = re.compile(r"^@group\(0\) @binding\((\d+)\) var<([^>]*)> (\w+) : ([^;]+);$", re.M)
_POD = re.compile(
    r"^struct PODArgs \{.*?^\}\n@group\(0\) @binding\(\d+\) var<uniform> podArgs : PODArgs;$",
    re.M | re.S,
)
_GUARD = re.compile(
    r"^\s*(if \(blockIdx\.z \* gridDim\.x \+ blockIdx\.x > podArgs\.packGridDimX\) \{ return; \})$", re.M
)


def subgroup_wgsl(spec: Gemm, entry: str, compiled: str) -> str:
    """WGSL computing the GEMM with subgroup matrices, for the kernel TVM compiled as `compiled`:
    its bindings (the same buffers in the same slots, the grid-packing uniform) and grid are kept."""
    storage = (m for m in _BINDING.finditer(compiled) if m.group(2).startswith("storage"))
    buffers = sorted(storage, key=lambda m: int(m.group(1)))
    # TVM names each binding after its parameter (the output's comes first): find them by name
    named = {m.group(3).split("_")[0]: m.group(3) for m in buffers}
    if len(buffers) != 3 or set(named) != {"left", "right", "gemm"}:
        raise ValueError(f"{entry}: expected storage bindings left, right, gemm; found {[m.group(3) for m in buffers]}")
    left, right, out = named["left"], named["right"], named["gemm"]
    pod = _POD.search(compiled)
    guard = _GUARD.search(compiled)
    t = FRAG
    fm, fn = spec.tile_m // t, spec.tile_n // t
    tiles_m = spec.m // spec.tile_m
    lmat = f"subgroup_matrix_left<f16, {t}, {t}>"
    rmat = f"subgroup_matrix_right<f16, {t}, {t}>"
    cmat = f"subgroup_matrix_result<f16, {t}, {t}>"
    lines = ["enable f16;", "enable chromium_experimental_subgroup_matrix;", ""]
    lines += [m.group(0) for m in buffers]
    if pod:
        lines += ["", pod.group(0)]
    lines += [
        "",
        f"@compute @workgroup_size({SUBGROUP}, 1, 1)",
        f"fn {entry}(@builtin(workgroup_id) blockIdx : vec3<u32>, @builtin(num_workgroups) gridDim : vec3<u32>) {{",
    ]
    if guard:
        lines.append(f"  {guard.group(1)}")
    lines += [
        "  let tile_n = blockIdx.z * gridDim.x + blockIdx.x;",
        f"  let b = blockIdx.y / {tiles_m}u;",
        f"  let r0 = (blockIdx.y % {tiles_m}u) * {spec.tile_m}u;",
        f"  let c0 = tile_n * {spec.tile_n}u;",
        f"  let lbase = {f'b * {spec.m * spec.k}u' if spec.left_batched else '0u'};",
        f"  let rbase = {f'b * {spec.n * spec.k}u' if spec.right_batched else '0u'};",
        f"  let obase = b * {spec.m * spec.n}u;",
    ]
    lines += [f"  var acc{i}_{j} = {cmat}();" for i in range(fm) for j in range(fn)]
    lines.append(f"  for (var k = 0u; k < {spec.k}u; k += {t}u) {{")
    for i in range(fm):
        at = f"lbase + (r0 + {i * t}u) * {spec.k}u + k, false, {spec.k}u"
        lines.append(f"    let a{i} = subgroupMatrixLoad<{lmat}>(&{left}, {at});")
    for j in range(fn):
        if spec.right_nk:  # right stored [N, K]: column-major K x N
            at = f"rbase + (c0 + {j * t}u) * {spec.k}u + k, true, {spec.k}u"
        else:
            at = f"rbase + k * {spec.n}u + c0 + {j * t}u, false, {spec.n}u"
        lines.append(f"    let b{j} = subgroupMatrixLoad<{rmat}>(&{right}, {at});")
    for i in range(fm):
        for j in range(fn):
            lines.append(f"    acc{i}_{j} = subgroupMatrixMultiplyAccumulate(a{i}, b{j}, acc{i}_{j});")
    lines.append("  }")
    for i in range(fm):
        for j in range(fn):
            at = f"obase + (r0 + {i * t}u) * {spec.n}u + c0 + {j * t}u"
            lines.append(f"  subgroupMatrixStore(&{out}, {at}, acc{i}_{j}, false, {spec.n}u);")
    lines.append("}")
    return "\n".join(lines) + "\n"


def overrides(mod, shaders: dict[str, str]) -> dict[str, str]:
    """Entry point -> subgroup-matrix WGSL, for each f16 GEMM kernel of a scheduled module."""
    out = {}
    for gvar, func in mod.functions_items():
        if not is_prim_func(func) or func.attrs is None or ATTR not in func.attrs:
            continue
        spec = Gemm(**json.loads(str(func.attrs[ATTR])))
        if spec.dtype != "float16":
            continue  # the fragments are f16: an fp32 build keeps TVM's kernels
        entry = f"{gvar.name_hint}_kernel"
        if entry not in shaders:
            raise ValueError(f"GEMM kernel {gvar.name_hint!r} has no compiled shader {entry!r}")
        out[entry] = subgroup_wgsl(spec, entry, shaders[entry])
    return out


def make(target, options):
    """The pipeline's step (wsd/passes/pipeline.py): the CPU build gets the GEMMs unscheduled."""
    return subgroup_gemm_pass(gpu=target.kind.name != "llvm")
