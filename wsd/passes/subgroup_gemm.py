"""GEMMs on tensor cores through WebGPU's subgroup matrices (`--subgroup-matrix`).

Dawn exposes NVIDIA's tensor cores to WGSL as `chromium-experimental-subgroup-matrix`
(16x16x16 f16 tiles, VK_KHR_cooperative_matrix underneath). TVM's WebGPU codegen knows no such
types, so:

- a graph pass turns each conv2d and matmul whose shapes fit the tiles into a GEMM: a conv is
  W[O, K] x cols[b] = out[b, O, Ho*Wo], which is NCHW as it stands, where cols (K = C*kh*kw rows,
  one column per output position) is an im2col buffer, or, where that buffer would be large
  (the VAE at 512², SDXL), read from the input image in place (implicit GEMM); a 1x1 stride-1
  conv reads its input as the right matrix directly, and a linear layer reads its weight
  column-major; a left matrix of rows no tile divides (CLIP's 77 tokens, the time embedding's 2)
  is read as zeros past its last row inside the kernel, and the extra output rows sliced off;
- where a GEMM has too few output tiles to fill the GPU (the UNet's 16x16 and 8x8 levels, K up
  to 23040), K is split into parts whose f32 partial sums an elementwise kernel adds up;
- each GEMM is an opaque kernel with a plain TIR schedule (one workgroup per output tile, a
  serial K loop per output): what runs on an adapter without subgroup matrices, slowly;
- the build writes, per fp16 GEMM kernel, WGSL with the same bindings and launch grid that
  computes the tile on tensor cores (shaders/subgroup-matrix.json); the page swaps it in for
  TVM's when the device can run it (web/lib/assets.js).

The tensor-core kernel is the layout the H100 measured fastest at the UNet's shapes
(scripts/gpu/probe_gemm_tiles.mjs, docs/gpu.md): 4 subgroups share a 32-128 square tile; A and B
tiles are copied into workgroup memory with 16-byte loads (rows padded by 8 halves) while the
next K tile is prefetched into registers (a conv's image tile 8 halves at a time, with the
padding's zeros, as the implicit GEMM must); accumulation is f32, written as f16 through a small
per-subgroup scratch tile with one 16-byte store per lane (or as f32 partials when K is split).

The epilogue (bias, residual) is not fused into the GEMM: it runs as the elementwise kernel FuseOps
makes of what follows, one extra pass over the output. Shapes that do not fit (the UNet's first and
last convs, whose 4 channels are no multiple of 32) keep TVM's path.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, replace

from wsd.passes.ir import CONFIG_ATTR, RULE_ATTR, call_rewriter, dtype_of, kernel_swaps, op_name, shape_of
from wsd.passes.split_k import sum_parts

FRAG = 16  # the fragment edge: f16 16x16x16 is offered by every adapter seen (NVIDIA; Apple's is 8x8)
SUBGROUP = 32  # the subgroup size the tensor-core WGSL assumes (the page checks the adapter's)
GRID = (2, 2)  # subgroups per workgroup, rows x columns of the output tile
THREADS = SUBGROUP * GRID[0] * GRID[1]
TILES = (128, 64, 32)  # output tile edges: each subgroup holds (edge / 2 / 16)^2 fragments
PREFERRED_TILES = ((128, 128), (64, 64), (64, 32), (32, 64), (32, 32))
PAD = 8  # halves added to each workgroup-memory row: rows then start on different banks
RULE = "SubgroupMatrixGemm"
ATTR = "wsd.subgroup_gemm"  # the GEMM's spec (JSON) on its PrimFunc
FEATURE = "chromium-experimental-subgroup-matrix"
FEATURES = [FEATURE, "subgroups"]  # `subgroups` for the subgroup_id builtin
# A 128x128 tile needs this many workgroups (probe, H100: 64x64 tiles beat 128x128 on the 32x32
# level's conv, 60 vs 51 TFLOP/s; 128x128 won on the geglu linear's 1280 tiles, 42 vs 34).
MIN_TILES = 512
# Under this many workgroups K is split in 4 (probe: the 1280-channel 16x16-level conv, 160
# tiles, 57 -> 82 TFLOP/s; the 8x8 level 14 -> 48; the 32x32 level, 320 tiles, lost: 60 -> 51).
SPLIT_BELOW = 256
MIN_SPLIT_K = 256  # a part shorter than this is not worth its partial output
# Attention's GEMMs are padded to fit the tiles where that adds at most this factor of work: SD's
# 40-wide heads (K 40 -> 48, N 40 -> 64) and 77 text tokens (N 77 -> 96, K 77 -> 80) all fit.
PAD_WORK = 1.75
# A conv whose im2col buffer would be larger than this reads its input in place (implicit GEMM).
# H100, 2026-12-07, the same call: the SD 1.5 VAE decode (512², im2col buffers up to 1.2 GB) took
# 44-46 ms implicit vs 61 ms with im2col; SDXL's buffers reach 4.5 GiB, over any binding limit.
# The UNet's (at most 142 MB) keep im2col: implicit, its conv GEMMs took 1.5-2x as long (the
# gather's index math redone for every tile of output channels), 35.8 vs 28.3 + 5.0 ms im2col.
IMPLICIT_ABOVE = 256 << 20


@dataclass(frozen=True)
class Conv:
    """A conv's geometry where its GEMM reads the input image itself (implicit GEMM): the right
    matrix's element (k, p) is x[b, k // (kh*kw), y, x] at output position p, zero in the padding."""

    channels: int
    height: int
    width: int
    kh: int
    kw: int
    stride: tuple[int, int]
    padding: tuple[int, int]  # top, left
    dilation: tuple[int, int]
    out_height: int
    out_width: int

    def __post_init__(self):  # lists after a JSON round trip
        for name in ("stride", "padding", "dilation"):
            object.__setattr__(self, name, tuple(getattr(self, name)))


@dataclass(frozen=True)
class Gemm:
    """out[b, m, n] = sum_k left[b?, m, k] * right[b?, k, n]; row-major unless `right_nk`
    (right stored as [N, K]: column-major). A side without `_batched` is shared by every b.
    With `split` > 1 the kernel writes f32 partial sums out[b, s, m, n] over K / split each."""

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
    split: int = 1
    conv: Conv | None = None  # the right matrix is a conv's input read in place (not right_nk)
    # the left matrix's rows where it has fewer than m (0: m): the kernel reads the rest as zeros,
    # so a linear layer of 2 or 154 rows needs no pad kernel; the output keeps m rows
    rows: int = 0

    def __post_init__(self):
        if isinstance(self.conv, dict):  # from the JSON on a kernel's PrimFunc
            object.__setattr__(self, "conv", Conv(**self.conv))

    def with_tile(self) -> Gemm:
        """64x64 tiles (the probe's fastest at the UNet's convs), 128x128 where they still give
        MIN_TILES workgroups, smaller where the output is not a multiple of 64; GEMMs with too
        few workgroups split K."""
        for tm, tn in PREFERRED_TILES:
            tiles = self.batch * (self.m // tm) * (self.n // tn)
            if self.m % tm == 0 and self.n % tn == 0 and (tm < max(TILES) or tiles >= MIN_TILES):
                break
        split = 1
        if tiles < SPLIT_BELOW:
            split = next((s for s in (4, 2) if self.k % (s * FRAG) == 0 and self.k // s >= MIN_SPLIT_K), 1)
        return replace(self, tile_m=tm, tile_n=tn, split=split)

    @property
    def name(self) -> str:
        layout = "nk" if self.right_nk else "kn"
        parts = f"_k{self.split}" if self.split > 1 else ""
        parts = f"_r{self.rows}{parts}" if self.rows else parts
        if c := self.conv:
            layout = f"conv{c.kh}x{c.kw}s{c.stride[0]}p{c.padding[0]}_{c.height}x{c.width}"
        return f"sgemm_{self.batch}x{self.m}x{self.n}x{self.k}_{layout}{parts}"

    @property
    def left_rows(self) -> int:
        return self.rows or self.m

    @property
    def out_dtype(self) -> str:
        return "float32" if self.split > 1 else self.dtype

    @property
    def k_tile(self) -> int:
        """K per workgroup-memory tile: 32 (probe: the fastest), 16 where a part is not a multiple,
        and for fp32 operands (a 128x128 tile's A and B then take 21 KiB of workgroup memory, not 37)."""
        return 32 if (self.k // self.split) % 32 == 0 and self.dtype == "float16" else 16

    def grid(self) -> tuple[int, int]:
        """(x, y) workgroups: x over N tiles, y over batch x split x M tiles."""
        return self.n // self.tile_n, self.batch * self.split * (self.m // self.tile_m)


def fits(m: int, n: int, k: int) -> bool:
    edge = min(TILES)
    return min(m, n) >= edge and m % edge == 0 and n % edge == 0 and k >= FRAG and k % FRAG == 0


def padded_rows(m: int) -> int:
    """M rounded up to the smallest tile, where the rows the kernel adds as zeros are at most
    PAD_WORK of the work (CLIP's 77 tokens: 96; the text K/V projections' 154: 160) or M is under
    one tile (the time embedding's 2 rows: the GEMM is a read of the weight, whatever M is)."""
    edge = min(TILES)
    up = -(-m // edge) * edge
    return up if up == m or m < edge or up <= PAD_WORK * m else m


# --- the kernel TVM compiles (what runs without the feature) ------------------------------------


def gemm_func(spec: Gemm, gpu: bool):
    """The GEMM as a PrimFunc out[b, s, m, n] (s: the K parts, 1 unless split): for the GPU,
    scheduled with the launch grid of the subgroup-matrix WGSL (x: N tiles, y: batch x parts x M
    tiles); unscheduled for the CPU."""
    from tvm import te

    from wsd.compat import get_block, schedule_class, scheduled_attr, tir

    left = te.placeholder((spec.batch if spec.left_batched else 1, spec.left_rows, spec.k), spec.dtype, name="left")
    rshape = (spec.n, spec.k) if spec.right_nk else (spec.k, spec.n)
    if spec.conv:
        rshape = (spec.conv.channels, spec.conv.height, spec.conv.width)
    right = te.placeholder((spec.batch if spec.right_batched else 1, *rshape), spec.dtype, name="right")
    part = spec.k // spec.split
    r = te.reduce_axis((0, part), name="k")

    def at(b, s, i, j):
        lb = b if spec.left_batched else 0
        rb = b if spec.right_batched else 0
        kk = s * part + r
        lv, rv = left[lb, i, kk], (right[rb, j, kk] if spec.right_nk else right[rb, kk, j])
        if spec.rows:
            lv = tir().if_then_else(i < spec.rows, lv, tir().const(0, spec.dtype))
        if spec.conv:
            rv = _image_at(spec.conv, right, rb, kk, j)
        if spec.out_dtype != spec.dtype:  # f32 partial sums
            lv, rv = lv.astype(spec.out_dtype), rv.astype(spec.out_dtype)
        return te.sum(lv * rv, axis=r)

    out = te.compute((spec.batch, spec.split, spec.m, spec.n), at, name="gemm")
    func = te.create_prim_func([left, right, out]).without_attr("global_symbol")  # private, like emit_te's
    func = func.with_attr(ATTR, json.dumps(asdict(spec), sort_keys=True)).with_attr("op_pattern", 8)  # opaque
    if not gpu:
        return func
    sch = schedule_class()(func)
    block = get_block(sch, "gemm")
    b, s, i, j, k = sch.get_loops(block)
    io, ii = sch.split(i, [None, spec.tile_m])
    jo, ji = sch.split(j, [None, spec.tile_n])
    sch.reorder(b, s, io, jo, ii, ji, k)
    sch.bind(sch.fuse(b, s, io), "blockIdx.y")
    sch.bind(jo, "blockIdx.x")
    outer, lane = sch.split(sch.fuse(ii, ji), [None, THREADS])
    sch.reorder(lane, outer)
    sch.bind(lane, "threadIdx.x")
    parts = f", K in {spec.split} parts" if spec.split > 1 else ""
    config = f"{spec.tile_m}x{spec.tile_n} tile{parts}"
    return sch.mod["main"].with_attr(scheduled_attr(), True).with_attr(RULE_ATTR, RULE).with_attr(CONFIG_ATTR, config)


# --- the graph pass --------------------------------------------------------------------------


def _call_gemm(builder, spec: Gemm, left, right, gpu: bool):
    """The GEMM's output: (batch, 1, m, n), or (batch, m, n) where split parts were summed in f32
    and cast back."""
    from tvm import relax

    from wsd.compat import tensor_info

    spec = spec.with_tile()
    gvar = builder.add_func(gemm_func(spec, gpu), spec.name)
    out = tensor_info((spec.batch, spec.split, spec.m, spec.n), spec.out_dtype)
    parts = builder.emit(relax.call_tir(gvar, [left, right], out))
    if spec.split == 1:
        return parts
    return builder.emit_te(sum_parts, parts, spec.dtype, 1, "gemm_parts_sum", primfunc_name_hint="gemm_parts_sum")


def _image_at(conv: Conv, x, b, kk, p):
    """The conv's right matrix at (kk, p), read from the image x[b]: zero in the padding."""
    from wsd.compat import tir

    tirx = tir()
    ci, rest = kk // (conv.kh * conv.kw), kk % (conv.kh * conv.kw)
    y = (p // conv.out_width) * conv.stride[0] + (rest // conv.kw) * conv.dilation[0] - conv.padding[0]
    xx = (p % conv.out_width) * conv.stride[1] + (rest % conv.kw) * conv.dilation[1] - conv.padding[1]
    inside = tirx.all(y >= 0, y < conv.height, xx >= 0, xx < conv.width)
    return tirx.if_then_else(inside, x[b, ci, y, xx], tirx.const(0, x.dtype))


def _im2col(x, conv: Conv):
    """cols[b, (c, i, j), (ho, wo)]: the conv's right matrix, row-major K x N per batch."""
    from tvm import te

    n, c = (int(d) for d in x.shape[:2])
    shape = (n, c * conv.kh * conv.kw, conv.out_height * conv.out_width)
    return te.compute(shape, lambda b, kk, p: _image_at(conv, x, b, kk, p), name="im2col")


# ops a value may pass through after a GEMM and still be padded in the same elementwise kernel
_ELEMENTWISE = frozenset(
    f"relax.{op}"
    for op in ("reshape", "permute_dims", "strided_slice", "astype", "multiply", "add", "subtract", "divide")
)


def _elementwise_after_kernel(bound, x) -> bool:
    """Whether x comes from a parameter or one of our GEMMs through elementwise and layout ops
    only. A pad of it can then join that elementwise kernel; after a reduction or a TVM conv or
    matmul it would become that kernel's epilogue, which no rule schedules (wsd/passes/pad_apart.py)."""
    from tvm import relax

    while (producer := bound(x)) is not None:
        if isinstance(producer, relax.Var):  # an alias
            x = producer
            continue
        if not isinstance(producer, relax.Call):  # a tuple's item, a constant: not followed
            return False
        name = op_name(producer)
        if name == "relax.call_tir":
            return producer.args[0].name_hint.startswith(("sgemm_", "gemm_parts_sum"))
        others = [a for a in producer.args[1:] if isinstance(a, relax.Var) and bound(a) is not None]
        if name not in _ELEMENTWISE or others:
            return False
        x = producer.args[0]
    return True


def _zero_pad(x, shape: list[int]):
    """x with zeros appended up to `shape`, as an elementwise TE kernel (FuseOps joins it to its
    producer, where Relax's pad stays a kernel of its own: wsd/passes/pad_apart.py)."""
    from tvm import te

    from wsd.compat import tir

    t = tir()
    grown = [a for a, size in enumerate(shape) if size != int(x.shape[a])]

    def at(*i):
        inside = t.all(*[i[a] < int(x.shape[a]) for a in grown])
        return t.if_then_else(inside, x(*i), t.const(0, x.dtype))

    return te.compute(shape, at, name="zero_pad")


def pad_to(builder, x, sizes: dict[int, int], bound=None):
    """x with zeros appended along each axis in `sizes` up to that size: in the elementwise
    kernel that makes x where `bound` (the rewriter's binding lookup) shows one does."""
    from tvm import relax

    shape = shape_of(x)
    width = [0] * (2 * len(shape))
    for axis, size in sizes.items():
        width[2 * axis + 1] = size - shape[axis]
    if not any(width):
        return x
    if bound is not None and _elementwise_after_kernel(bound, x):
        grown = [size + width[2 * a + 1] for a, size in enumerate(shape)]
        return builder.emit_te(lambda v: _zero_pad(v, grown), x, primfunc_name_hint="zero_pad")
    return builder.emit(relax.op.nn.pad(x, width))


def _ragged(m: int, padded: int) -> int:
    """Gemm.rows for a left matrix of m rows in a GEMM of `padded` rows."""
    return m if padded != m else 0


def _rows_of(builder, product, m: int):
    """The first m rows of a GEMM's product (its second-to-last axis)."""
    from tvm import relax

    axis = len(shape_of(product)) - 2
    if shape_of(product)[axis] == m:
        return product
    return builder.emit(relax.op.strided_slice(product, axes=[axis], begin=[0], end=[m]))


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
        mp = padded_rows(o)  # the UNet's last conv has 4 output channels: rows of zeros up to 32
        if not fits(mp, ho * wo, k):
            return None
        strides, dilation = [int(v) for v in a.strides], [int(v) for v in a.dilation]
        padding = [int(v) for v in a.padding]
        weight = builder.emit(relax.op.reshape(w, (1, o, k)))
        spec = Gemm(batch, mp, ho * wo, k, dtype, False, True, False, rows=_ragged(o, mp))

        def gemm(spec, right):
            return relax.op.reshape(_rows_of(builder, _call_gemm(builder, spec, weight, right, gpu), o), out)

        if (kh, kw) == (1, 1) and strides == [1, 1] and not any(padding):
            return gemm(spec, builder.emit(relax.op.reshape(x, (batch, c, h * wd))))  # already K x N per batch
        # the bottom and right padding only shape the output: reads past the image are zeros
        geometry = Conv(c, h, wd, kh, kw, tuple(strides), tuple(padding[:2]), tuple(dilation), ho, wo)
        cols_bytes = batch * k * ho * wo * (2 if dtype == "float16" else 4)
        if cols_bytes > IMPLICIT_ABOVE and wo % 8 == 0:  # the WGSL copies runs of 8 positions of a row
            return gemm(replace(spec, conv=geometry), x)
        return gemm(spec, builder.emit_te(lambda image: _im2col(image, geometry), x, primfunc_name_hint="im2col"))

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
        if len(xs) == len(ys) > 2 and xs[:-2] == ys[:-2]:  # batched on both sides (attention)
            return attention(builder, x, source, nk, out, dtype, bound)
        m, n = math.prod(xs[:-1]), ys[-1]  # a shared right matrix (a linear layer's weight): x's rows are M
        mp = padded_rows(m)
        if len(ys) != 2 or not fits(mp, n, k):
            return None
        left = builder.emit(relax.op.reshape(x, (1, m, k)))
        right = builder.emit(relax.op.reshape(source, (1, *((n, k) if nk else (k, n)))))
        spec = Gemm(1, mp, n, k, dtype, left_batched=True, right_batched=False, right_nk=nk, rows=_ragged(m, mp))
        return relax.op.reshape(_rows_of(builder, _call_gemm(builder, spec, left, right, gpu), m), out)

    def attention(builder, x, source, nk, out, dtype, bound):
        """A matmul batched on both sides: attention's scores (q x k^T) and their product with v.
        SD's 40-wide heads and 77 text tokens fit no tile: K is padded with zeros to a multiple of
        16, N to one of 32 and M inside the kernel (the extra output columns and rows sliced off)
        where that adds at most PAD_WORK of the work. The pads join the elementwise kernel that
        makes the operand where there is one (`pad_to`)."""
        xs = shape_of(x)
        m, k, batch = xs[-2], xs[-1], math.prod(xs[:-2])
        n = shape_of(source)[-2] if nk else shape_of(source)[-1]
        kp, np_, mp = -(-k // FRAG) * FRAG, -(-n // min(TILES)) * min(TILES), padded_rows(m)
        if mp * kp * np_ > PAD_WORK * m * k * n or not fits(mp, np_, kp):
            return None
        left = pad_to(builder, builder.emit(relax.op.reshape(x, (batch, m, k))), {2: kp}, bound)
        rshape, grow = ((batch, n, k), {1: np_, 2: kp}) if nk else ((batch, k, n), {1: kp, 2: np_})
        right = pad_to(builder, builder.emit(relax.op.reshape(source, rshape)), grow, bound)
        spec = Gemm(batch, mp, np_, kp, dtype, left_batched=True, right_batched=True, right_nk=nk, rows=_ragged(m, mp))
        product = _rows_of(builder, _call_gemm(builder, spec, left, right, gpu), m)
        if np_ != n:
            last = len(shape_of(product)) - 1
            product = builder.emit(relax.op.strided_slice(product, axes=[last], begin=[0], end=[n]))
        return relax.op.reshape(product, out)

    def reshape(builder, call, bound):
        """A reshape of a reshape reads the first one's source (a reshape to the same shape is
        dropped): chained reshapes (a GEMM's output to the op's, then the graph's own) fuse into
        a copy kernel where nothing consumes them elementwise, 0.9 ms per attention score matrix
        on an H100."""
        source = bound(call.args[0])
        if op_name(source) != "relax.reshape":
            return None
        inner = source.args[0]
        return inner if shape_of(inner) == shape_of(call) else relax.op.reshape(inner, shape_of(call))

    convs = call_rewriter("relax.nn.conv2d", conv, "wsd.SubgroupGemmConv2d")
    matmuls = call_rewriter("relax.matmul", matmul, "wsd.SubgroupGemmMatmul")
    chains = call_rewriter("relax.reshape", reshape, "wsd.SubgroupGemmReshapes")
    return tvm.transform.Sequential(
        [convs, matmuls, chains, relax.transform.DeadCodeElimination()], name="wsd.SubgroupGemm"
    )


# --- the WGSL the page swaps in -------------------------------------------------------------

_BINDING = re.compile(r"^@group\(0\) @binding\((\d+)\) var<([^>]*)> (\w+) : ([^;]+);$", re.M)
_POD = re.compile(
    r"^struct PODArgs \{.*?^\}\n@group\(0\) @binding\(\d+\) var<uniform> podArgs : PODArgs;$",
    re.M | re.S,
)
_GUARD = re.compile(
    r"^\s*(if \(blockIdx\.z \* gridDim\.x \+ blockIdx\.x > podArgs\.packGridDimX\) \{ return; \})$", re.M
)


def _wgsl_type(dtype: str) -> str:
    return {"float16": "f16", "float32": "f32"}[dtype]


def per_vec4(spec: Gemm) -> int:
    """Operand elements in 16 bytes: 8 halves or 4 floats."""
    return 8 if spec.dtype == "float16" else 4


def tile_strides(spec: Gemm) -> tuple[int, int]:
    """Elements per workgroup-memory row of As and of Bs (a K tile, or for B stored [K, N] an N
    tile), PAD past it."""
    return spec.k_tile + PAD, (spec.k_tile if spec.right_nk else spec.tile_n) + PAD


def tile_copies(spec: Gemm) -> tuple[list[tuple[str, str, str, int, str]], list[str]]:
    """The K tile's copy into workgroup memory, as (register, source index, destination index,
    units in the tile, the condition under which the source exists: "" always) per 16-byte load
    of one thread (`e` its unit within the tile), and the workgroup arrays. A unit is a vec4 (8
    halves or 4 floats; source indexes count vec4s, and every row starts on one), or, for a conv
    whose image is read in place, a run of 8 output positions (`_image_run`)."""
    v, elem = per_vec4(spec), _wgsl_type(spec.dtype)
    kt, kv = spec.k_tile, spec.k // v
    a_stride, b_stride = tile_strides(spec)
    copies = []
    # A: tile_m rows of kt elements, from row m0 + row, column k0 (zeros past the left's rows)
    a_row = f"(e / {kt // v}u)"
    a_col = f"(e % {kt // v}u)"
    a_src = f"abase + (m0 + {a_row}) * {kv}u + k0 / {v}u + {a_col}"
    exists = f"m0 + {a_row} < {spec.rows}u" if spec.rows else ""
    copies.append(("a", a_src, f"{a_row} * {a_stride}u + {a_col} * {v}u", spec.tile_m * kt // v, exists))
    arrays = [f"var<workgroup> As : array<{elem}, {spec.tile_m * a_stride}>;"]
    if spec.right_nk:  # B stored [N, K]: tile_n rows of kt elements
        src = f"bbase + (n0 + {a_row}) * {kv}u + k0 / {v}u + {a_col}"
        copies.append(("b", src, f"{a_row} * {b_stride}u + {a_col} * {v}u", spec.tile_n * kt // v, ""))
        arrays.append(f"var<workgroup> Bs : array<{elem}, {spec.tile_n * b_stride}>;")
    else:  # B stored [K, N]: kt rows of tile_n elements
        u = 8 if spec.conv else v  # an image is read in runs of 8 positions
        row, col = f"(e / {spec.tile_n // u}u)", f"(e % {spec.tile_n // u}u)"
        src = f"bbase + (k0 + {row}) * {spec.n // v}u + n0 / {v}u + {col}"
        copies.append(("b", src, f"{row} * {b_stride}u + {col} * {u}u", spec.tile_n * kt // u, ""))
        arrays.append(f"var<workgroup> Bs : array<{elem}, {kt * b_stride}>;")
    return copies, arrays


def _rows_in_vec4(spec: Gemm) -> bool:
    """Whether a conv's image tile can be read 16 bytes at a time: halves, stride 1 (8 output
    positions are 8 neighbouring inputs), rows whole vec4s, at most 8 halves of padding on the left."""
    conv = spec.conv
    aligned = conv.stride[1] == conv.dilation[1] == 1 and conv.width % 8 == 0 and conv.padding[1] <= 8
    return aligned and spec.dtype == "float16"


def _image_run(spec: Gemm) -> list[str]:
    """Where the `e`-th run of 8 output positions of the K tile row kk starts in the image: all
    8 are in one output row. Unsigned throughout: a position is compared with the padding before
    it is offset by it (yy, and u for `_rows_in_vec4` convs, are shifted by the padding)."""
    c = spec.conv
    runs, khw = spec.tile_n // 8, c.kh * c.kw
    (sh, sw), (dh, dw) = c.stride, c.dilation
    lines = [
        f"let kk = k0 + e / {runs}u;",
        f"let p = n0 + (e % {runs}u) * 8u;",
        f"let yy = (p / {c.out_width}u) * {sh}u + ((kk % {khw}u) / {c.kw}u) * {dh}u;",
    ]
    if _rows_in_vec4(spec):  # the first input column plus 8 (never negative): its vec4 plus one, and where in it
        return [*lines, f"let u = p % {c.out_width}u + kk % {c.kw}u + {8 - c.padding[1]}u;"]
    return [*lines, f"let xb = (p % {c.out_width}u) * {sw}u + (kk % {c.kw}u) * {dw}u;"]


def _image_registers(spec: Gemm, reg: str) -> list[str]:
    """What one thread holds of a conv's image tile between its load and its copy into workgroup
    memory: two aligned vec4s of a row (`_rows_in_vec4`), else 8 halves."""
    if _rows_in_vec4(spec):
        return [f"var {reg}{side} = vec4<u32>(0u, 0u, 0u, 0u);" for side in "lr"]
    return [f"var {reg}_{j} = {_wgsl_type(spec.dtype)}(0.0);" for j in range(8)]


def _image_row(conv: Conv, per_row: int) -> list[str]:
    """Opens the block that runs where the run's input row `yy` is inside the image (not in the
    top or bottom padding), with `row`: where that row starts, in units of `per_row` per row."""
    top = conv.padding[0]
    return [
        f"if (yy >= {top}u && yy < {top + conv.height}u) {{",
        f"  let row = ((b * {conv.channels}u + kk / {conv.kh * conv.kw}u) * {conv.height}u + yy - {top}u)"
        f" * {per_row}u;",
    ]


def _image_fetch(spec: Gemm, reg: str, image: str) -> list[str]:
    """The implicit GEMM's loads of one run of the right matrix's K tile from the conv's input
    image, zeros in the padding: loads only, so that the tensor cores' work on the current tile
    hides them (using the values here would wait for them; `_image_stash` does the rest)."""
    c = spec.conv
    lines = [*_image_run(spec)]
    if _rows_in_vec4(spec):
        row_vec4s = c.width // 8
        zero = "vec4<u32>(0u, 0u, 0u, 0u)"
        return [
            *lines,
            "let q = u / 8u;",
            f"{reg}l = {zero};",
            f"{reg}r = {zero};",
            *_image_row(c, row_vec4s),
            f"  if (q >= 1u && q < {row_vec4s + 1}u) {{",
            f"    {reg}l = {image}[row + q - 1u];",
            "  }",
            f"  if (q < {row_vec4s}u && u % 8u != 0u) {{",  # at offset 0 the run is one vec4
            f"    {reg}r = {image}[row + q];",
            "  }",
            "}",
        ]
    left, sw = c.padding[1], c.stride[1]
    lines += [f"{reg}_{j} = {_wgsl_type(spec.dtype)}(0.0);" for j in range(8)]
    lines += _image_row(c, c.width)
    for j in range(8):
        x = f"xb + {j * sw}u"
        inside = f"{x} >= {left}u && {x} < {left + c.width}u"
        lines += [f"  if ({inside}) {{", f"    {reg}_{j} = {image}[row + {x} - {left}u];", "  }"]
    return [*lines, "}"]


def _image_stash(spec: Gemm, reg: str, arr: str) -> list[str]:
    """The 8 halves `_image_fetch` loaded, into workgroup memory at `d`: for `_rows_in_vec4`
    convs shifted out of the two vec4s (`t` halves into the first). Branch-free (selects):
    neighbouring invocations hold different taps, so different shifts."""
    if not _rows_in_vec4(spec):
        return [f"{arr}[d + {j}u] = {reg}_{j};" for j in range(8)]
    lines = [
        *_image_run(spec),
        "let t = u % 8u;",
        "let odd = t % 2u == 1u;",
        "let w = t / 2u;",
        *[f"let c{i} = {reg}{'lr'[i // 4]}[{i % 4}];" for i in range(8)],
    ]
    # word i of the run: c[w + i], or across a word boundary where t is odd
    lines += [f"let s{k} = select(c{k}, (c{k} >> 16u) | (c{k + 1} << 16u), odd);" for k in range(7)]
    words = []
    for i in range(4):
        a, b, cc, d = (f"s{i + j}" for j in range(4))
        words.append(f"select(select({a}, {b}, w == 1u), select({cc}, {d}, w == 3u), w >= 2u)")
    return [*lines, *halves_into(arr, words)]


def halves_into(arr: str, words: list[str]) -> list[str]:
    """Four u32 words of two halves each (WGSL expressions) into workgroup memory `arr` at `d`."""
    lets = [f"let h{q} = bitcast<vec2<f16>>({word});" for q, word in enumerate(words)]
    return [*lets, *[f"{arr}[d + {2 * q + h}u] = h{q}.{'xy'[h]};" for q in range(len(words)) for h in (0, 1)]]


def _storage(compiled: str) -> list:
    """The compiled kernel's storage-buffer bindings, in slot order."""
    found = (m for m in _BINDING.finditer(compiled) if m.group(2).startswith("storage"))
    return sorted(found, key=lambda m: int(m.group(1)))


def storage_bindings(compiled: str, entry: str, expected: tuple[str, ...]) -> dict[str, str]:
    """The storage bindings of a compiled kernel by parameter name: TVM names each binding after
    its parameter ("left" -> left_ptr); anything but `expected` is refused."""
    storage = _storage(compiled)
    named = {m.group(3).split("_")[0]: m.group(3) for m in storage}
    if set(named) != set(expected) or len(storage) != len(expected):
        raise ValueError(f"{entry}: expected storage bindings {', '.join(expected)}; found {sorted(named.values())}")
    return named


SUBGROUP_ENABLES = (
    "enable f16;",
    "enable subgroups;",
    "enable chromium_experimental_subgroup_matrix;",
    # fragment offsets derive from subgroup_id, uniform per subgroup; Tint cannot prove it
    "diagnostic(off, subgroup_uniformity);",
    "diagnostic(off, chromium.subgroup_matrix_uniformity);",
)


def preamble(compiled: str, retyped: tuple[str, ...], enables: tuple[str, ...] = SUBGROUP_ENABLES) -> list[str]:
    """The enables, the compiled kernel's bindings (the same buffers in the same slots, those in
    `retyped` as array<vec4<u32>> for 16-byte access) and its grid-packing uniform."""
    lines = [*enables, ""]
    for m in _storage(compiled):
        lines.append(
            m.group(0).replace(f": {m.group(4)};", ": array<vec4<u32>>;") if m.group(3) in retyped else m.group(0)
        )
    if pod := _POD.search(compiled):
        lines += ["", pod.group(0)]
    return lines


def entry_lines(entry: str, compiled: str, threads: int = THREADS, subgroups: bool = True) -> list[str]:
    """The entry point's head, `threads` invocations (with their subgroup and lane where
    `subgroups`), and the compiled kernel's grid-packing guard."""
    ids = ", @builtin(subgroup_id) sg : u32, @builtin(subgroup_invocation_id) lane : u32" if subgroups else ""
    lines = [
        f"@compute @workgroup_size({threads}, 1, 1)",
        f"fn {entry}(@builtin(workgroup_id) blockIdx : vec3<u32>, @builtin(num_workgroups) gridDim : vec3<u32>, "
        f"@builtin(local_invocation_index) li : u32{ids}) {{",
    ]
    if guard := _GUARD.search(compiled):
        lines.append(f"  {guard.group(1)}")
    return lines


def half_store(scratch: str, at: str, frag: str, out: str, index: str) -> list[str]:
    """An f32 fragment written as f16 through a subgroup's scratch tile at `at` (16x16, row-major):
    each lane converts 8 of its 256 values, half a row (row lane / 2), and writes them with one
    16-byte store at `out`[`index`]."""
    pairs = ", ".join(
        f"bitcast<u32>(vec2<f16>(vec2<f32>({scratch}[c + {2 * h}u], {scratch}[c + {2 * h + 1}u])))" for h in range(4)
    )
    return [
        f"  subgroupMatrixStore(&{scratch}, {at}, {frag}, false, {FRAG}u);",
        "  workgroupBarrier();",
        "  {",
        f"    let c = {at} + lane * 8u;",
        f"    {out}[{index}] = vec4<u32>({pairs});",
        "  }",
        "  workgroupBarrier();",
    ]


def tile_origin(spec: Gemm) -> list[str]:
    """The workgroup's output tile and operand bases, from the grid (x: N tiles, packed into z
    where it is large; y: batch x split x M tiles): b, the K part's start kbeg, m0, n0, abase,
    bbase (in vec4s), bs (batch x split + part: the output's slab)."""
    tiles_m = spec.m // spec.tile_m
    return [
        "  let tile_n = blockIdx.z * gridDim.x + blockIdx.x;",
        f"  let bs = blockIdx.y / {tiles_m}u;",  # batch x split + part
        f"  let b = bs / {spec.split}u;",
        f"  let kbeg = (bs % {spec.split}u) * {spec.k // spec.split}u;",
        f"  let m0 = (blockIdx.y % {tiles_m}u) * {spec.tile_m}u;",
        f"  let n0 = tile_n * {spec.tile_n}u;",
        f"  let abase = {f'b * {spec.left_rows * spec.k // per_vec4(spec)}u' if spec.left_batched else '0u'};",
        f"  let bbase = {f'b * {spec.n * spec.k // per_vec4(spec)}u' if spec.right_batched else '0u'};",
    ]


def operands_retyped(spec: Gemm, left: str, right: str) -> tuple[str, ...]:
    """The operand bindings read 16 bytes at a time (a strided conv's image: halves)."""
    scalar_image = spec.conv is not None and not _rows_in_vec4(spec)
    return (left, *(() if scalar_image else (right,)))


def staged_k_loop(spec: Gemm, left: str, right: str, threads: int, compute: list[str]) -> list[str]:
    """The K loop both kernels share: each K tile of A and B is copied from registers into
    workgroup memory (As, Bs), and the next tile's loads are in flight while `compute` (statements
    of the loop body, indented by 4, reading As and Bs) works on this one. `threads` invocations
    (`li`) share each copy."""
    copies, _ = tile_copies(spec)
    kt, part = spec.k_tile, spec.k // spec.split
    # each thread copies `count` vec4s of each tile (the last round partly where it does not divide)
    sizes = {w: n for w, _, _, n, _ in copies}
    rounds = {w: -(-n // threads) for w, n in sizes.items()}

    def image(w):  # the B copy of a conv whose GEMM reads the image in place
        return w == "b" and spec.conv is not None

    lines = []
    for w in sizes:
        for q in range(rounds[w]):
            held = _image_registers(spec, f"r{w}{q}") if image(w) else [f"var r{w}{q} = vec4<u32>();"]
            lines += [f"  {x}" for x in held]

    source = {"a": left, "b": right}

    def each_copy(body):
        """`body(copy, fill)`: one round's statements ("a" or "b"); `fill`: its names."""
        out = []
        for w, src, dst, _, exists in copies:
            for q in range(rounds[w]):
                e = f"li + {q * threads}u"
                fill = {"src": src, "dst": dst, "reg": f"r{w}{q}", "arr": f"{w.upper()}s", "buf": source[w]}
                fill["exists"] = exists
                inner = [f"  {line}" for line in body(w, fill)]
                if sizes[w] % threads and q == rounds[w] - 1:
                    out += [f"if ({e} < {sizes[w]}u) {{", f"  let e = {e};", *inner, "}"]
                else:
                    out += ["{", f"  let e = {e};", *inner, "}"]
        return out

    def load(w, fill):
        if image(w):
            return _image_fetch(spec, fill["reg"], right)
        if fill["exists"]:  # a row past the left's: zeros (the register keeps the last tile's otherwise)
            return [
                "{reg} = vec4<u32>(0u, 0u, 0u, 0u);".format(**fill),
                "if ({exists}) {{".format(**fill),
                "  {reg} = {buf}[{src}];".format(**fill),
                "}",
            ]
        return ["{reg} = {buf}[{src}];".format(**fill)]

    def store(w, fill):
        if image(w):
            return [f"let d = {fill['dst']};", *_image_stash(spec, fill["reg"], fill["arr"])]
        words = [f"{fill['reg']}[{q}]" for q in range(4)]
        if spec.dtype == "float16":
            return [f"let d = {fill['dst']};", *halves_into(fill["arr"], words)]
        floats = [f"{fill['arr']}[d + {q}u] = bitcast<f32>({w});" for q, w in enumerate(words)]
        return [f"let d = {fill['dst']};", *floats]

    fetch = each_copy(load)
    stash = each_copy(store)
    lines += ["  {", "    let k0 = kbeg;", *[f"    {x}" for x in fetch], "  }"]
    lines.append(f"  for (var k0 = kbeg; k0 < kbeg + {part}u; k0 += {kt}u) {{")
    lines += [f"    {x}" for x in stash]
    lines.append("    workgroupBarrier();")
    # the next K tile's loads are in flight while this one is multiplied
    lines.append(f"    if (k0 + {kt}u < kbeg + {part}u) {{")
    lines.append(f"      let k1 = k0 + {kt}u;")
    lines += [f"      {x.replace('k0', 'k1')}" for x in fetch]  # the copy's only K term is k0
    lines.append("    }")
    lines += compute
    lines += ["    workgroupBarrier();", "  }"]
    return lines


def subgroup_wgsl(spec: Gemm, entry: str, compiled: str) -> str:
    """WGSL computing the GEMM with subgroup matrices, for the kernel TVM compiled as `compiled`:
    its bindings (the same buffers in the same slots; the operands retyped as vec4<u32> for
    16-byte loads), its grid-packing uniform and its grid are kept."""
    named = storage_bindings(compiled, entry, ("left", "right", "gemm"))
    left, right, out = (named[n] for n in ("left", "right", "gemm"))
    t, kt = FRAG, spec.k_tile
    fm, fn = spec.tile_m // GRID[0] // t, spec.tile_n // GRID[1] // t
    acc = "f32"  # f16 products summed in f32: fp16 accumulators over K = 11520 cost accuracy
    lmat, rmat = f"subgroup_matrix_left<f16, {t}, {t}>", f"subgroup_matrix_right<f16, {t}, {t}>"
    cmat = f"subgroup_matrix_result<{acc}, {t}, {t}>"
    a_stride, b_stride = tile_strides(spec)
    _, arrays = tile_copies(spec)
    half_out = spec.out_dtype == "float16"
    # 16-byte loads of the operands and stores of f16 results
    retyped = (*operands_retyped(spec, left, right), *((out,) if half_out else ()))
    lines = preamble(compiled, retyped)
    lines += ["", *arrays]
    if half_out:
        lines.append(f"var<workgroup> Cs : array<f32, {GRID[0] * GRID[1] * t * t}>;")
    lines += ["", *entry_lines(entry, compiled), *tile_origin(spec)]
    lines += [
        f"  let sr = (sg / {GRID[1]}u) * {fm * t}u;",
        f"  let sc = (sg % {GRID[1]}u) * {fn * t}u;",
    ]
    lines += [f"  var acc{i}_{j} = {cmat}();" for i in range(fm) for j in range(fn)]
    compute = [f"    for (var kk = 0u; kk < {kt}u; kk += {t}u) {{"]
    for i in range(fm):
        compute.append(
            f"      let a{i} = subgroupMatrixLoad<{lmat}>(&As, (sr + {i * t}u) * {a_stride}u + kk, false, {a_stride}u);"
        )
    for j in range(fn):
        if spec.right_nk:
            at = f"(sc + {j * t}u) * {b_stride}u + kk, true"
        else:
            at = f"kk * {b_stride}u + sc + {j * t}u, false"
        compute.append(f"      let b{j} = subgroupMatrixLoad<{rmat}>(&Bs, {at}, {b_stride}u);")
    for i in range(fm):
        for j in range(fn):
            compute.append(f"      acc{i}_{j} = subgroupMatrixMultiplyAccumulate(a{i}, b{j}, acc{i}_{j});")
    compute.append("    }")
    lines += staged_k_loop(spec, left, right, THREADS, compute)
    lines.append(f"  let obase = bs * {spec.m * spec.n}u;")
    for i in range(fm):
        for j in range(fn):
            at = f"obase + (m0 + sr + {i * t}u) * {spec.n}u + n0 + sc + {j * t}u"
            if not half_out:
                lines.append(f"  subgroupMatrixStore(&{out}, {at}, acc{i}_{j}, false, {spec.n}u);")
                continue
            # f32 accumulators to f16 through this subgroup's scratch tile, 16 bytes per lane
            index = f"({at}) / 8u + (lane / 2u) * {spec.n // 8}u + lane % 2u"
            lines += half_store("Cs", f"sg * {t * t}u", f"acc{i}_{j}", out, index)
    lines.append("}")
    return "\n".join(lines) + "\n"


def overrides(mod, shaders: dict[str, str]) -> dict[str, str]:
    """Entry point -> subgroup-matrix WGSL, for each f16 GEMM kernel of a scheduled module."""

    def write(fields, entry, compiled):
        spec = Gemm(**fields)
        # the fragments are f16: an fp32 build's GEMMs have the tiled WGSL only (wsd/tiled_gemm.py)
        return subgroup_wgsl(spec, entry, compiled) if spec.dtype == "float16" else None

    return kernel_swaps(mod, shaders, ATTR, write)


def requirements(swaps: dict[str, str], path: str) -> dict:
    """The manifest's `subgroup_matrix` section: what the page checks before it swaps the shaders
    in (web/lib/assets.js): the fragment shape, the subgroup size and the workgroup memory."""
    from wsd.requirements import of_shaders

    return {
        "shaders": path,
        "kernels": len(swaps),
        "fragment": [FRAG, FRAG, FRAG],
        "subgroup_size": SUBGROUP,
        "workgroup_storage": of_shaders(swaps)["maxComputeWorkgroupStorageSize"],
    }


def make(target, options):
    """The pipeline's step (wsd/passes/pipeline.py): the CPU build gets the GEMMs unscheduled."""
    return subgroup_gemm_pass(gpu=target.kind.name != "llvm")
