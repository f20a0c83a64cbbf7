"""--subgroup-matrix: convs and matmuls as im2col + GEMM kernels whose tensor-core WGSL the page
swaps in. The graph rewrite is checked numerically on the CPU and on WebGPU in Chromium
(SwiftShader has no subgroup matrices: TVM's GEMM kernels run); the tensor-core WGSL, which only a
GPU runs, by executing its index arithmetic against numpy."""

from __future__ import annotations

import re

import numpy as np
import pytest

from wsd import compat
from wsd.passes.subgroup_gemm import Gemm, overrides, subgroup_gemm_pass, subgroup_wgsl

DT = "float32"


def small_graph(dtype=DT):
    """A 3x3 conv with bias, a 1x1 conv, a linear layer (matmul with permute_dims), a strided conv,
    a conv too narrow for the fragments (4 output channels), and attention-shaped matmuls batched
    on both sides over (batch, heads), one against a transposed key."""
    from tvm import relax

    bb = relax.BlockBuilder()
    t = compat.tensor_info
    x = relax.Var("x", t((2, 32, 16, 16), dtype))
    w = relax.Var("w", t((64, 32, 3, 3), dtype))
    w1 = relax.Var("w1", t((64, 64, 1, 1), dtype))
    lw = relax.Var("lw", t((48, 64), dtype))
    bias = relax.Var("bias", t((1, 64, 1, 1), dtype))
    narrow = relax.Var("narrow", t((4, 32, 3, 3), dtype))
    q = relax.Var("q", t((2, 3, 32, 16), dtype))
    kt = relax.Var("kt", t((2, 3, 48, 16), dtype))
    params = [x, w, w1, lw, bias, narrow, q, kt]
    with bb.function("main", params):
        with bb.dataflow():
            c = bb.emit(relax.op.add(bb.emit(relax.op.nn.conv2d(x, w, padding=(1, 1), out_dtype=dtype)), bias))
            c2 = bb.emit(relax.op.nn.conv2d(c, w1, out_dtype=dtype))
            rows = bb.emit(relax.op.reshape(relax.op.permute_dims(c2, [0, 2, 3, 1]), (2, 256, 64)))
            lin = bb.emit(relax.op.matmul(rows, relax.op.permute_dims(lw, [1, 0]), out_dtype=dtype))
            c3 = bb.emit(relax.op.nn.conv2d(x, w, strides=(2, 2), padding=(1, 1), out_dtype=dtype))
            c4 = bb.emit(relax.op.nn.conv2d(x, narrow, padding=(1, 1), out_dtype=dtype))
            scores = bb.emit(relax.op.matmul(q, relax.op.permute_dims(kt, [0, 1, 3, 2]), out_dtype=dtype))
            mixed = bb.emit(relax.op.matmul(scores, kt, out_dtype=dtype))
            out = bb.emit_output(relax.Tuple([c2, lin, c3, c4, scores, mixed]))
        bb.emit_func_output(out)
    rng = np.random.default_rng(0)
    values = [rng.standard_normal([int(d) for d in compat.type_of(v).shape]).astype(dtype) for v in params]
    return bb.get(), values


def run_on_cpu(mod, values):
    import tvm
    from tvm import relax

    ex = relax.build(relax.transform.LegalizeOps()(mod), compat.llvm_target())
    vm = relax.VirtualMachine(ex, tvm.cpu())
    return [o.numpy() for o in vm["main"](*[compat.tensor(v, tvm.cpu()) for v in values])]


def gemm_names(mod) -> list[str]:
    return sorted(g.name_hint for g, _ in mod.functions_items() if g.name_hint.startswith("sgemm_"))


def test_the_rewrite_computes_what_the_graph_did():
    mod, values = small_graph()
    rewritten = subgroup_gemm_pass(gpu=False)(mod)
    # the 3x3, the 1x1 (no im2col), the linear (its weight read column-major), the strided conv,
    # the two attention matmuls over 2 x 3 (batch, head) pairs (the key read column-major)
    assert gemm_names(rewritten) == [
        "sgemm_1x512x48x64_nk",
        "sgemm_2x64x256x288_kn",
        "sgemm_2x64x256x64_kn",
        "sgemm_2x64x64x288_kn",
        "sgemm_6x32x16x48_kn",
        "sgemm_6x32x48x16_nk",
    ]
    script = rewritten.script()
    assert script.count("R.nn.conv2d(") == 1  # the 4-channel conv keeps its op: 4 rows are no 16x16 fragment
    assert "permute_dims(lw" not in script  # no transpose kernel for the linear's weight
    for want, got in zip(run_on_cpu(mod, values), run_on_cpu(rewritten, values), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)


def test_the_gpu_kernel_launches_the_grid_its_wgsl_assumes():
    from wsd.passes.subgroup_gemm import gemm_func

    spec = Gemm(2, 64, 256, 288, "float16", left_batched=False, right_batched=True, right_nk=False).with_tile()
    func = gemm_func(spec, gpu=True)
    bound = re.finditer(r"T\.thread_binding\((\d+), thread=\"(\w+\.\w)\"\)", func.script())
    extents = {m.group(2): int(m.group(1)) for m in bound}
    assert extents == {"blockIdx.y": spec.grid()[1], "blockIdx.x": spec.grid()[0], "threadIdx.x": 32}


def test_tiles_fill_the_gpu_where_the_shape_allows():
    big = Gemm(2, 320, 4096, 2880, "float16", False, True, False).with_tile()
    assert (big.tile_m, big.tile_n) == (64, 64)  # 2 x 5 x 64 = 640 workgroups
    small = Gemm(2, 1280, 256, 11520, "float16", False, True, False).with_tile()
    assert (small.tile_m, small.tile_n) == (32, 32)  # 64x64 would give 160
    odd = Gemm(1, 512, 48, 64, "float16", True, False, True).with_tile()
    assert (odd.tile_m, odd.tile_n) == (16, 16)  # 48 columns and 24 tiles at most: the most workgroups


# --- the WGSL, executed: its offsets and strides against numpy --------------------------------


def execute_wgsl(code: str, grid: tuple[int, int], buffers: dict[str, np.ndarray], out_name: str) -> np.ndarray:
    """Runs a subgroup-matrix GEMM shader's arithmetic: each workgroup's `let`s, its K loop of
    loads and multiply-accumulates and its stores, with 16x16 fragments as numpy blocks."""
    body = code[code.index("{", code.index("fn ")) + 1 :]

    def value(expr, env):
        return int(eval(re.sub(r"(\d+)u\b", r"\1", expr), {}, dict(env)))  # noqa: S307 (our own WGSL)

    def load(name, offset, col_major, stride):
        flat = buffers[name].reshape(-1)
        rows = np.arange(16)[:, None]
        cols = np.arange(16)[None, :]
        return flat[offset + (cols * stride + rows if col_major else rows * stride + cols)]

    lets = re.findall(r"^\s*let (\w+) = (.*);$", body.split("for (var k")[0], re.M)
    loop = re.search(r"for \(var k = 0u; k < (\d+)u; k \+= 16u\) \{(.*?)\n  \}", body, re.S)
    load_call = r"let (\w+) = subgroupMatrixLoad<\w+<f16, 16, 16>>\(&(\w+), (.*), (true|false), (\d+)u\);"
    loads = re.findall(load_call, loop.group(2))
    mmas = re.findall(r"(\w+) = subgroupMatrixMultiplyAccumulate\((\w+), (\w+), \w+\);", loop.group(2))
    stores = re.findall(r"subgroupMatrixStore\(&(\w+), (.*), (\w+), false, (\d+)u\);", body)
    out = buffers[out_name].reshape(-1).copy()
    for y in range(grid[1]):
        for x in range(grid[0]):
            env = {"blockIdx": type("V", (), {"x": x, "y": y, "z": 0}), "gridDim": type("V", (), {"x": grid[0]})}
            for name, expr in lets:
                env[name] = value(expr, env)
            acc = {name: np.zeros((16, 16)) for name, _, _ in mmas}
            for k in range(0, int(loop.group(1)), 16):
                env["k"] = k
                frags = {n: load(b, value(o, env), c == "true", int(s)) for n, b, o, c, s in loads}
                for target, a, b in mmas:
                    acc[target] += frags[a].astype(np.float64) @ frags[b]
            for _, offset, frag, stride in stores:
                at = value(offset, env)
                for r in range(16):
                    out[at + r * int(stride) : at + r * int(stride) + 16] = acc[frag][r]
    return out


@pytest.mark.parametrize(
    "spec",
    [
        Gemm(2, 64, 128, 96, "float16", left_batched=False, right_batched=True, right_nk=False, tile_m=64, tile_n=32),
        Gemm(1, 96, 48, 64, "float16", left_batched=True, right_batched=False, right_nk=True, tile_m=32, tile_n=16),
        Gemm(3, 32, 64, 32, "float16", left_batched=True, right_batched=True, right_nk=True, tile_m=16, tile_n=64),
    ],
    ids=["conv", "linear", "batched-nk"],  # tiles set apart from with_tile's choice: rows and columns differ
)
def test_the_subgroup_wgsl_computes_the_gemm(spec):
    header = (
        "@group(0) @binding(0) var<storage, read_write> gemm_ptr : array<f16>;\n"
        "@group(0) @binding(1) var<storage, read> left_ptr : array<f16>;\n"
        "@group(0) @binding(2) var<storage, read> right_ptr : array<f16>;\n\n"
        "struct PODArgs {\n  packGridDimX: u32\n}\n@group(0) @binding(3) var<uniform> podArgs : PODArgs;\n"
        "fn x() {\n  if (blockIdx.z * gridDim.x + blockIdx.x > podArgs.packGridDimX) { return; }\n"
    )
    code = subgroup_wgsl(spec, "gemm_kernel", header)
    assert "@compute @workgroup_size(32, 1, 1)" in code and "fn gemm_kernel(" in code
    assert "podArgs.packGridDimX) { return; }" in code and "@binding(3) var<uniform> podArgs" in code
    rng = np.random.default_rng(1)
    left = rng.integers(-3, 4, (spec.batch if spec.left_batched else 1, spec.m, spec.k)).astype(np.float64)
    rshape = (spec.n, spec.k) if spec.right_nk else (spec.k, spec.n)
    right = rng.integers(-3, 4, (spec.batch if spec.right_batched else 1, *rshape)).astype(np.float64)
    out = np.zeros((spec.batch, spec.m, spec.n))
    got = execute_wgsl(code, spec.grid(), {"left_ptr": left, "right_ptr": right, "gemm_ptr": out}, "gemm_ptr")
    r = np.swapaxes(right, 1, 2) if spec.right_nk else right
    want = np.broadcast_to(left @ r, out.shape)
    np.testing.assert_array_equal(got.reshape(out.shape), want)


def test_a_wrong_stride_in_the_wgsl_is_caught():
    """The executor is not a mirror of the generator: a WGSL that reads the right matrix with the
    wrong stride computes something else, and the comparison sees it."""
    spec = Gemm(1, 32, 32, 32, "float16", True, False, False).with_tile()
    names = ("gemm", "left", "right")
    header = "\n".join(f"@group(0) @binding({i}) var<storage, read> {n}_ptr : array<f16>;" for i, n in enumerate(names))
    code = subgroup_wgsl(spec, "gemm_kernel", header).replace("false, 32u);\n    acc", "false, 16u);\n    acc")
    rng = np.random.default_rng(2)
    left, right = rng.integers(-3, 4, (1, 32, 32)).astype(float), rng.integers(-3, 4, (1, 32, 32)).astype(float)
    buffers = {"left_ptr": left, "right_ptr": right, "gemm_ptr": np.zeros((1, 32, 32))}
    got = execute_wgsl(code, spec.grid(), buffers, "gemm_ptr")
    assert not np.array_equal(got.reshape(1, 32, 32), left @ right)


def test_a_shader_without_the_gemm_bindings_is_refused():
    spec = Gemm(1, 32, 32, 32, "float16", True, False, False).with_tile()
    with pytest.raises(ValueError, match="left, right, gemm"):
        subgroup_wgsl(spec, "k", "@group(0) @binding(0) var<storage, read_write> out_ptr : array<f16>;\n")


def test_a_webgpu_build_ships_one_swap_per_fp16_gemm():
    """The real codegen's shader is what the swap is made from (bindings named after the GEMM's
    parameters, output first), and an fp32 build swaps nothing."""
    import tvm
    from tvm import relax

    from wsd.passes.options import PassOptions
    from wsd.passes.pipeline import apply, build_config
    from wsd.wgsl import shaders_of

    target = compat.webgpu_target()
    for dtype, want in (("float16", 6), ("float32", 0)):
        mod, _ = small_graph(dtype)
        with target, tvm.transform.PassContext(opt_level=3):
            mod = apply(mod, target, PassOptions(subgroup_matrix=True))
        with tvm.transform.PassContext(opt_level=3, config=build_config(target)):
            shaders = shaders_of(relax.build(mod, target).mod)
        swaps = overrides(mod, shaders)
        assert len(swaps) == want
        for entry, code in swaps.items():
            assert entry in shaders and f"fn {entry}(" in code
            tvm_bindings = re.findall(r"^@group\(0\) @binding\(\d\) var<[^>]*> \w+ : [^;]+;$", shaders[entry], re.M)
            assert tvm_bindings and all(b in code for b in tvm_bindings)


@pytest.mark.browser
def test_the_rewritten_graph_runs_on_webgpu(runner, runner_url, kit):
    """The rewritten graph (im2col, GEMM kernels: TVM's, as SwiftShader has no subgroup matrices)
    compiled for WebGPU, run in Chromium, equals the original graph on the CPU. The rewrite on a
    whole model: the gate passed 15/15 on SwiftShader on sd15-tiny built with --subgroup-matrix
    (2026-12-05), and on an NVIDIA adapter with the tensor-core shaders swapped in (docs/gpu.md)."""
    import tvm
    from tvm import relax

    from wsd.host.modules import run_entry
    from wsd.passes.options import PassOptions
    from wsd.passes.pipeline import apply, build_config
    from wsd.webrt import wasm_fcompile

    mod, values = small_graph()
    target = compat.webgpu_target()
    with target, tvm.transform.PassContext(opt_level=3):
        built = apply(mod, target, PassOptions(subgroup_matrix=True))
    assert len(gemm_names(built)) == 6
    with tvm.transform.PassContext(opt_level=3, config=build_config(target)):
        executable = relax.build(built, target)
    _, artifacts = runner_url
    executable.export_library(str(artifacts / "sgemm.wasm"), fcompile=wasm_fcompile(kit))
    got = run_entry(runner, "/a/sgemm.wasm", "main", values).outputs
    for want, out in zip(run_on_cpu(mod, values), got, strict=True):
        np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-3)
