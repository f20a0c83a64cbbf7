"""The WebGPU matmul tiles (wsd/passes/matmul_schedule.py): which tile a GEMM shape gets, and that
every tile lowers to WGSL Dawn accepts, for a plain matmul and a conv2d (implicit GEMM).
Their numerics on WebGPU are the conformance gate's: every tiny model's matmul uses them."""

from __future__ import annotations

import re

import pytest

from wsd import wgsl
from wsd.passes import matmul_schedule as ms
from wsd.passes.options import DEFAULT, PassOptions


def test_large_gemms_get_large_tiles_and_small_m_long_k_gets_parallelism():
    assert ms.choose_tile((1, 8192, 320, 2880)).rows >= 64  # SD 1.5's 64x64-level conv
    assert ms.choose_tile((1, 512, 10240, 1280)).rows >= 64  # a feed-forward matmul
    small = ms.choose_tile((1, 128, 1280, 11520))  # the 8x8-level conv: M = 2 x 64
    assert (small.rows, small.cols) == (16, 16)


@pytest.mark.parametrize(
    "shape",
    [(1, 8192, 320, 2880), (16, 4096, 40, 4096), (1, 512, 1280, 11520), (1, 2048, 640, 5760), (2, 77, 768, 768)],
)
def test_the_chosen_tile_fills_the_gpu_when_any_tile_can(shape):
    batch, m, n, _ = shape
    tile = ms.choose_tile(shape)
    groups = batch * -(-m // tile.rows) * -(-n // tile.cols)
    if any(batch * -(-m // t.rows) * -(-n // t.cols) >= ms.MIN_WORKGROUPS for t in ms.TILES):
        assert groups >= ms.MIN_WORKGROUPS
    else:
        assert tile == ms.TILES[-1]


def test_tiles_fit_webgpu_default_limits():
    for tile in ms.TILES:
        assert tile.threads_x * tile.threads_y <= 256
        padded = (tile.k + tile.vector) * 4  # bytes per row with storage alignment
        assert (tile.rows + tile.cols) * padded <= 16384


def _kernels():
    from tvm import te, topi

    a, b = te.placeholder((96, 72), name="A"), te.placeholder((40, 72), name="B")
    r = te.reduce_axis((0, 72))
    c = te.compute((96, 40), lambda i, j: te.sum(a[i, r] * b[j, r], axis=r))
    x, w = te.placeholder((2, 8, 12, 12), name="X"), te.placeholder((16, 8, 3, 3), name="W")
    return {
        "matmul": te.create_prim_func([a, b, c]),
        "conv2d": te.create_prim_func([x, w, topi.nn.conv2d_nchw(x, w, 1, 1, 1)]),
    }


@pytest.mark.parametrize("variant", sorted(ms.PINNABLE))
def test_each_tile_lowers_to_wgsl_dawn_accepts(variant):
    import tvm

    from wsd.compat import tir, webgpu_target

    target = webgpu_target()
    shaders = {}
    for name, func in _kernels().items():
        rule = ms.webgpu_matmul_rule(PassOptions(matmul_tile=variant))
        with target:
            sch = rule.apply(func, target, False)
        assert sch is not None, name
        assert rule.describe().startswith(variant)
        mod = tvm.IRModule({name: sch.mod["main"].with_attr("global_symbol", name)})
        lib = tir().build(mod, target=tvm.target.Target(target, host="llvm"))
        shaders.update(wgsl.shaders_of(lib))
        # storage alignment pads each workgroup-memory row past the k-tile (no bank-aligned rows)
        tile = ms.PINNABLE[variant]
        sizes = [int(s) for s in re.findall(r"var<workgroup> \w+ : array<f32, (\d+)>", shaders[f"{name}_kernel"])]
        assert sizes and all(s > tile.rows * tile.k or s > tile.cols * tile.k for s in sizes)
    wgsl.require_valid(shaders)


def test_an_unknown_pinned_tile_is_refused_by_name():
    from wsd.errors import BuildError

    with pytest.raises(BuildError, match="matmul tile '48x48' is not one of 128x128, 64x64"):
        ms.webgpu_matmul_rule(PassOptions(matmul_tile="48x48"))


def test_fewer_workgroups_asked_give_larger_tiles():
    assert ms.choose_tile((1, 8192, 320, 2880), min_workgroups=128).rows == 128


def test_a_non_gemm_kernel_is_left_to_the_next_rule():
    from tvm import te

    from wsd.compat import webgpu_target

    x = te.placeholder((64, 64), name="X")
    y = te.compute((64, 64), lambda i, j: x[i, j] * 2.0)
    target = webgpu_target()
    with target:
        assert ms.webgpu_matmul_rule().apply(te.create_prim_func([x, y]), target, False) is None


def test_a_warps_lanes_run_along_n_so_stores_coalesce():
    """threadIdx.x along N (dlight's inner_x) halved the attention scores' matmul on an H200;
    the tile's M and N spans stay what choose_tile picked."""
    from wsd.compat import webgpu_target

    rule = ms.webgpu_matmul_rule()
    rule._tile = ms.TILES[2]  # 32x64: not square, so a swapped span would show
    config = rule.get_configs(webgpu_target())
    assert config.inner_x is True
    m_span = config.block_size_y * config.micro_size_y
    n_span = config.block_size_x * config.micro_size_x
    assert (m_span * config.vthread_x, n_span * config.vthread_y) == (32, 64)


def matmul_shader(dtype: str, options: PassOptions = DEFAULT) -> tuple[str, object]:
    """The WGSL of a 128x64 @ 64x96 matmul scheduled by the rule, and the rule (its describe())."""
    import tvm
    from tvm import te

    from wsd.compat import schedule_class, tir, webgpu_target

    a, b = te.placeholder((128, 64), dtype, name="A"), te.placeholder((64, 96), dtype, name="B")
    r = te.reduce_axis((0, 64))
    c = te.compute((128, 96), lambda i, j: te.sum(a[i, r] * b[r, j], axis=r), name="matmul")
    target = webgpu_target()
    rule = ms.webgpu_matmul_rule(options)
    original = schedule_class().decompose_reduction
    with target:
        sch = rule.apply(te.create_prim_func([a, b, c]), target, False)
    assert schedule_class().decompose_reduction is original  # the hook is gone after the rule
    mod = tvm.IRModule({"mm": sch.mod["main"].with_attr("global_symbol", "mm")})
    lib = tir().build(mod, target=tvm.target.Target(target, host="llvm"))
    return wgsl.shaders_of(lib)["mm_kernel"], rule


@pytest.mark.parametrize(("dtype", "packed"), [("float16", True), ("float32", False)])
def test_fp16_accumulators_are_packed_into_vec2_fmas(dtype, packed):
    """Scalar f16 FMAs run at the fp32 rate on NVIDIA (an fp16 SD 1.5 UNet was 1.05x of fp32 on an
    H200); vec2<f16> ones issue as packed half2. fp32 kernels keep scalar accumulators."""
    shader, rule = matmul_shader(dtype)
    assert ("<f16> accumulators" in rule.describe()) is packed
    assert ("fma(vec2<f16>" in shader) is packed
    assert "var matmul_reindex_local : array<vec2<f16>" in shader if packed else "fma(" in shader


def test_fp32_kernels_keep_their_k_loop():
    """No explicit unroll for fp32 (the unrolled WGSL doubled SwiftShader's pipeline compile and
    ran no faster on an H100); --matmul-unroll 256 still unrolls, for comparison builds."""
    rolled, _ = matmul_shader("float32")
    unrolled, _ = matmul_shader("float32", PassOptions(matmul_unroll=256))
    assert rolled.count("fma(") < unrolled.count("fma(") // 8, (rolled.count("fma("), unrolled.count("fma("))


def test_the_packing_hook_is_removed_when_the_rule_fails(monkeypatch):
    from wsd.compat import schedule_class

    original = schedule_class().decompose_reduction
    with pytest.raises(RuntimeError), ms.packed_accumulators():
        assert schedule_class().decompose_reduction is not original
        raise RuntimeError("a rule that asserts")
    assert schedule_class().decompose_reduction is original
