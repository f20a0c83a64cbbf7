"""A WebGPU configuration for dlight's Matmul rule, chosen per kernel from its GEMM shape.

dlight has no WebGPU branch: every matmul and conv2d (as an implicit GEMM) gets one generic
32x32 tile of 8x8 threads, each thread owning 4 contiguous output rows, with the A and B tiles
in workgroup memory at a row stride equal to the k-tile. Two things held SD 1.5's UNet there
(measured on an H100, docs/gpu.md):

- bank conflicts: a warp's row-threads read workgroup memory 4 rows apart, a multiple of 32
  floats, so all in one bank; padding the rows alone cannot fix a stride that is a multiple of 4;
- too few workgroups for small-M, long-K convolutions (the 8x8 and 16x16 UNet levels: M = 128,
  K = 11520 gives 160 workgroups of 64 threads on a 132-SM GPU).

So each thread computes 2x2 outputs per virtual thread, the virtual threads strided, over padded
rows (storage alignment); and among the tiles that give enough workgroups to fill a large GPU,
the one with the least padded work per workgroup-memory load is chosen. The tile is recorded per
kernel (kernels.json `config`).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

from wsd.passes.options import DEFAULT, PassOptions

# Enough workgroups to give every SM of a data-center GPU several (132 SMs on an H100);
# a smaller GPU is full sooner and loses little from the smaller tiles.
MIN_WORKGROUPS = 512


@dataclass(frozen=True)
class Tile:
    threads_x: int  # threads along M (rows of the output)
    threads_y: int  # threads along N
    micro_x: int  # outputs per thread along M
    micro_y: int
    k: int = 16
    vthreads: int = 1  # >1: each thread's outputs are strided (rows vt*threads + t), not contiguous
    # Vector loads (2 or 4) fail TVM 0.27's WebGPU lowering on plain matmuls (PointerValueTypeRewrite:
    # "info.factor() % me->coeff"), so workgroup memory is filled one float per load.
    vector: int = 1

    @property
    def rows(self) -> int:
        return self.threads_x * self.micro_x * self.vthreads

    @property
    def cols(self) -> int:
        return self.threads_y * self.micro_y * self.vthreads


# Largest first; every one fits WebGPU's defaults (256 invocations, 16 KiB of workgroup memory).
# Each thread computes 2x2 outputs per virtual thread, the virtual threads strided by the
# threads' span: a warp's row-threads then read workgroup memory at a stride of 2x(k+1) floats,
# 16 distinct banks, where 4 contiguous rows per thread (dlight's layout) gave 4-way conflicts.
TILES = (
    Tile(16, 16, 2, 2, k=8, vthreads=4),  # 128x128
    Tile(16, 16, 2, 2, vthreads=2),  # 64x64
    Tile(8, 16, 2, 2, vthreads=2),  # 32x64
    Tile(8, 8, 2, 2, vthreads=2),  # 32x32
    Tile(8, 8, 2, 2),  # 16x16: long-K, small-M convolutions
)
# dlight's explicit unroll of each thread's k-loop. WGSL has no unroll hint, so TVM unrolls into
# the source; without it, fp32: sd15's WGSL 6.4 -> 2.3 MB, a sd15-tiny page open on SwiftShader
# 45 -> 20 s, the same H100 speed (135.9 vs 136.1 ms per UNet call; the driver unrolls). Packed
# fp16 accumulators keep it: their vec2<f16> registers need the constant indices unrolling gives
# (with a loop they fall back to scalar f16 storage). PassOptions.matmul_unroll sets both
# (comparison builds: `wsd build --matmul-unroll N`).
UNROLL = 0
UNROLL_PACKED = 256
# PassOptions.matmul_tile ("64x64"): one tile for every kernel (comparison builds: `--matmul-tile`).
# Variants that lost on a GPU (contiguous outputs per thread, 8x8 outputs per thread, lanes along
# M, 128 workgroups) are described with their figures in docs/gpu.md; git has their code.
PINNABLE = {f"{t.rows}x{t.cols}": t for t in TILES}


def gemm_shape(func):
    """(batch, M, N, K) of a kernel's main matmul-like block, or None if it has none."""
    import importlib

    from wsd.compat import dlight, schedule_class

    dl = dlight()
    mm = importlib.import_module(dl.gpu.Matmul.__module__)
    sch = schedule_class()(func)
    blocks = sch.get_child_blocks(mm.get_root_block(sch))
    reductions = mm.get_reduction_blocks(sch, blocks)
    if not reductions:
        return None
    block = sch.get(reductions[0])
    maps = mm.get_index_map(block)
    if not maps:
        return None
    extents = [iv.dom.extent for iv in block.iter_vars]
    shape = maps[0].map_shape(extents)
    if not all(hasattr(d, "value") for d in shape):
        return None  # a dynamic dimension: the generic tile
    return tuple(int(d.value) for d in shape)


def choose_tile(shape, tiles=TILES, min_workgroups=MIN_WORKGROUPS) -> Tile:
    """The tile with the least padded work per workgroup-memory load among those that give
    min_workgroups workgroups (ties: the larger tile, fewer global loads); the smallest when
    none does."""
    batch, m, n, _ = shape

    def cost(tile):
        rows, cols = -(-m // tile.rows) * tile.rows, -(-n // tile.cols) * tile.cols
        mx, my = tile.micro_x * tile.vthreads, tile.micro_y * tile.vthreads
        intensity = mx * my / (mx + my)  # FMAs per workgroup-memory load
        return rows * cols / intensity

    full = [t for t in tiles if batch * -(-m // t.rows) * -(-n // t.cols) >= min_workgroups]
    return min(full, key=cost) if full else tiles[-1]


def writes_float16(func) -> bool:
    """Whether a kernel's main matmul-like block accumulates in fp16."""
    import importlib

    from wsd.compat import dlight, region_dtype, schedule_class

    mm = importlib.import_module(dlight().gpu.Matmul.__module__)
    sch = schedule_class()(func)
    reductions = mm.get_reduction_blocks(sch, sch.get_child_blocks(mm.get_root_block(sch)))
    return bool(reductions) and region_dtype(sch.get(reductions[0]).writes[0]) == "float16"


@contextmanager
def packed_accumulators():
    """fp16 accumulators two (or four) at a time: vec2<f16> FMAs, which NVIDIA GPUs issue as
    packed half2 at twice the rate of scalar ones (scalar f16 runs at the fp32 rate, so an fp16
    build was no faster: 140 vs 145 ms per SD 1.5 UNet call on an H200).

    dlight vectorizes a thread's outputs along its inner axis only together with vector loads of
    the tiles into workgroup memory, and those fail TVM 0.27's WebGPU lowering (see Tile.vector).
    A reduction's loop can no longer be vectorized once dlight has split off its init, so the
    inner output loop is vectorized just before `decompose_reduction`, dlight's last step."""
    from wsd.compat import schedule_class

    cls = schedule_class()
    original = cls.decompose_reduction

    def decompose_reduction(sch, block, loop):
        # dlight's inner loops end (..., micro, vector=1) with the micro loop along threadIdx.x's axis
        loops = sch.get_loops(block)
        extents = [sch.get(lp).extent for lp in loops[-2:]]
        if len(loops) >= 2 and all(hasattr(e, "value") for e in extents):
            micro, vector = (int(e.value) for e in extents)
            if vector == 1 and micro in (2, 4):
                sch.vectorize(sch.fuse(*loops[-2:]))
        return original(sch, block, loop)

    cls.decompose_reduction = decompose_reduction
    try:
        yield
    finally:
        cls.decompose_reduction = original


def pinned_tile(name: str | None) -> Tile | None:
    """The tile PassOptions.matmul_tile names ("64x64"), None for none; an unknown name is refused."""
    if name is None:
        return None
    if name not in PINNABLE:
        from wsd.errors import BuildError

        raise BuildError(f"matmul tile {name!r} is not one of {', '.join(PINNABLE)}")
    return PINNABLE[name]


def webgpu_matmul_rule(options: PassOptions = DEFAULT):
    """dlight's Matmul with its configuration chosen per kernel (see the module's doc).

    threadIdx.x (a warp's consecutive lanes) runs along N: each lane's outputs sit beside its
    neighbours' in a row, so the stores of the result (and of the fused epilogue) coalesce; along
    M a warp wrote 16 rows at once. The workgroup-memory reads are symmetric (B's rows for A's)."""
    from wsd.compat import dlight

    dl = dlight()
    pinned = pinned_tile(options.matmul_tile)
    unroll = options.matmul_unroll

    class WebGPUMatmul(dl.gpu.Matmul):
        _packed = False  # set per kernel by apply

        def apply(self, func, target, tunable):
            shape = gemm_shape(func)
            if shape is None:
                return None
            self._tile = pinned or choose_tile(shape)
            self._packed = writes_float16(func)
            if not self._packed:
                return super().apply(func, target, tunable)
            with packed_accumulators():
                return super().apply(func, target, tunable)

        def describe(self) -> str:
            t = self._tile
            threads = f"{t.threads_x}x{t.threads_y} threads"
            packed = f", vec{t.micro_y}<f16> accumulators" if self._packed else ""
            return (
                f"{t.rows}x{t.cols} tile, {threads}, k{t.k}, {t.vthreads}x{t.vthreads} vthreads, lanes along N{packed}"
            )

        def get_configs(self, target):
            t = self._tile
            # dlight's x parameters are M's and its y parameters N's, unless inner_x: then x is N
            # (bound to threadIdx.x) and y is M
            return dl.gpu.Matmul.Config(
                block_size_x=t.threads_y,
                block_size_y=t.threads_x,
                vthread_x=t.vthreads,
                vthread_y=t.vthreads,
                micro_size_x=t.micro_y,
                micro_size_y=t.micro_x,
                micro_size_k=t.k,
                vector_size=t.vector,
                unroll=unroll if unroll is not None else (UNROLL_PACKED if self._packed else UNROLL),
                use_shared=True,
                storage_align=True,
                inner_x=True,
            )

    WebGPUMatmul.__name__ = "Matmul"  # the rule's name in kernels.json stays dlight's
    return WebGPUMatmul()
