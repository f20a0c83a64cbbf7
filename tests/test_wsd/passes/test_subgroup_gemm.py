"""--subgroup-matrix: convs and matmuls as im2col + GEMM kernels whose tensor-core WGSL the page
swaps in. The graph rewrite is checked numerically on the CPU and on WebGPU in Chromium
(SwiftShader has no subgroup matrices: TVM's GEMM kernels run); the tensor-core WGSL, which only a
GPU runs, by executing its index arithmetic against numpy."""

from __future__ import annotations

import re

import numpy as np
import pytest
import wgsl_sim

from wsd import compat
from wsd.passes import pad_apart
from wsd.passes.subgroup_gemm import Conv, Gemm, overrides, subgroup_gemm_pass, subgroup_wgsl
from wsd.requirements import of_shaders

DT = "float32"


def small_graph(dtype=DT):
    """A 3x3 conv with bias, a 1x1 conv, a linear layer (matmul with permute_dims), a strided conv,
    a conv of 4 output channels (the UNet's last: a GEMM of 32 rows, 28 of them zeros), attention-shaped matmuls batched
    on both sides over (batch, heads), one against a transposed key, and the linear layer on 77
    and on 2 rows (CLIP's tokens, the time embedding: no multiple of a tile)."""
    from tvm import relax

    bb = relax.BlockBuilder()
    t = compat.tensor_info
    x = relax.Var("x", t((2, 32, 16, 16), dtype))
    w = relax.Var("w", t((64, 32, 3, 3), dtype))
    w1 = relax.Var("w1", t((64, 64, 1, 1), dtype))
    lw = relax.Var("lw", t((96, 64), dtype))
    bias = relax.Var("bias", t((1, 64, 1, 1), dtype))
    narrow = relax.Var("narrow", t((4, 32, 3, 3), dtype))
    q = relax.Var("q", t((2, 3, 32, 32), dtype))
    kt = relax.Var("kt", t((2, 3, 64, 32), dtype))
    tokens = relax.Var("tokens", t((1, 77, 64), dtype))
    temb = relax.Var("temb", t((2, 64), dtype))
    params = [x, w, w1, lw, bias, narrow, q, kt, tokens, temb]
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
            ragged = [
                bb.emit(relax.op.matmul(v, relax.op.permute_dims(lw, [1, 0]), out_dtype=dtype)) for v in (tokens, temb)
            ]
            out = bb.emit_output(relax.Tuple([c2, lin, c3, c4, scores, mixed, *ragged]))
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


def chained_reshapes(mod) -> list[str]:
    """Reshapes of a reshape: FuseOps makes such a chain a copy kernel where nothing consumes it
    elementwise (the H100 spent 0.9 ms per attention score matrix on one)."""
    script = mod.script()
    reshaped = set(re.findall(r"^\s*(\w+): R\.Tensor\(.*?\) = R\.reshape\(", script, re.M))
    return [v for v in re.findall(r"= R\.reshape\((\w+),", script) if v in reshaped]


@pytest.mark.parametrize("implicit", [True, False], ids=["implicit", "im2col"])
def test_the_rewrite_computes_what_the_graph_did(implicit, monkeypatch):
    from wsd.passes import subgroup_gemm

    monkeypatch.setattr(subgroup_gemm, "IMPLICIT_ABOVE", 0 if implicit else 2**40)
    mod, values = small_graph()
    rewritten = subgroup_gemm_pass(gpu=False)(mod)
    # the 3x3, the 1x1 (no im2col), the linear (its weight read column-major), the strided conv,
    # the two attention matmuls over 2 x 3 (batch, head) pairs (the key read column-major), the
    # linear on 77 and 2 rows in GEMMs of 96 and 32 (the rest of the rows zeros, sliced off)
    convs = [
        "sgemm_2x64x256x288_conv3x3s1p1_16x16",
        "sgemm_2x64x64x288_conv3x3s2p1_16x16",
        "sgemm_2x32x256x288_conv3x3s1p1_16x16_r4",
    ]
    assert gemm_names(rewritten) == sorted(
        [
            "sgemm_1x512x96x64_nk",
            "sgemm_1x96x96x64_nk_r77",
            "sgemm_1x32x96x64_nk_r2",
            *(convs if implicit else ["sgemm_2x64x256x288_kn", "sgemm_2x64x64x288_kn", "sgemm_2x32x256x288_kn_r4"]),
            "sgemm_2x64x256x64_kn",
            "sgemm_6x32x32x64_kn",
            "sgemm_6x32x64x32_nk",
        ]
    )
    assert ("im2col" in rewritten.script()) is not implicit
    assert chained_reshapes(rewritten) == []
    script = rewritten.script()
    assert "R.nn.conv2d(" not in script  # the 4-channel conv too: its weight's 4 rows, zeros past them
    assert "permute_dims(lw" not in script  # no transpose kernel for the linear's weight
    assert "R.nn.pad(" not in script  # the ragged rows are zeros in the kernel, not a padded copy
    for want, got in zip(run_on_cpu(mod, values), run_on_cpu(rewritten, values), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("implicit", [True, False], ids=["implicit", "im2col"])
def test_a_conv_padded_on_one_side_is_a_gemm_too(implicit, monkeypatch):
    """The VAE encoder's downsampling (diffusers pads right and bottom by one, then a stride-2
    conv): the output's size carries the far padding, reads past the image are zeros."""
    from tvm import relax

    from wsd.passes import subgroup_gemm

    monkeypatch.setattr(subgroup_gemm, "IMPLICIT_ABOVE", 0 if implicit else 2**40)
    bb = relax.BlockBuilder()
    x = relax.Var("x", compat.tensor_info((1, 16, 17, 17), DT))
    w = relax.Var("w", compat.tensor_info((32, 16, 3, 3), DT))
    with bb.function("main", [x, w]):
        with bb.dataflow():
            conv = relax.op.nn.conv2d(x, w, strides=(2, 2), padding=(0, 0, 1, 1), out_dtype=DT)
            out = bb.emit_output(relax.Tuple([bb.emit(conv)]))
        bb.emit_func_output(out)
    mod = bb.get()
    rewritten = subgroup_gemm_pass(gpu=False)(mod)
    assert gemm_names(rewritten) == [f"sgemm_1x32x64x144_{'conv3x3s2p0_17x17' if implicit else 'kn'}"]
    rng = np.random.default_rng(6)
    values = [rng.standard_normal((1, 16, 17, 17)).astype(DT), rng.standard_normal((32, 16, 3, 3)).astype(DT)]
    np.testing.assert_allclose(run_on_cpu(rewritten, values)[0], run_on_cpu(mod, values)[0], rtol=1e-5, atol=1e-4)


def test_attention_with_heads_no_tile_fits_is_padded():
    """SD's 40-wide heads and 77 text tokens: K padded with zeros to 48 and 80, N to 96 and 64,
    and the padded columns sliced off; the result is the graph's."""
    from tvm import relax

    bb = relax.BlockBuilder()
    t = compat.tensor_info
    q, k, v = (
        relax.Var(name, t(shape, DT))
        for name, shape in (("q", (2, 2, 64, 40)), ("k", (2, 2, 77, 40)), ("v", (2, 2, 77, 40)))
    )
    with bb.function("main", [q, k, v]):
        with bb.dataflow():
            aliased = bb.emit(k)  # a binding to another variable (the full UNet has them)
            scores = bb.emit(relax.op.matmul(q, relax.op.permute_dims(aliased, [0, 1, 3, 2]), out_dtype=DT))
            # as torch.export writes it: batched matmuls over reshaped operands
            scores3, v3 = bb.emit(relax.op.reshape(scores, (4, 64, 77))), bb.emit(relax.op.reshape(v, (4, 77, 40)))
            out = bb.emit_output(relax.Tuple([bb.emit(relax.op.matmul(scores3, v3, out_dtype=DT))]))
        bb.emit_func_output(out)
    mod = bb.get()
    rewritten = subgroup_gemm_pass(gpu=False)(mod)
    assert gemm_names(rewritten) == ["sgemm_4x64x64x80_kn", "sgemm_4x64x96x48_nk"]
    script = rewritten.script()
    # the pads are elementwise kernels that FuseOps joins to the reshapes (no kernel of their own)
    assert len(re.findall(r"R\.call_tir\((?:cls\.)?zero_pad", script)) == 4 and "R.nn.pad(" not in script
    assert script.count("R.strided_slice(") == 2
    assert chained_reshapes(rewritten) == []
    rng = np.random.default_rng(4)
    values = [rng.standard_normal(s).astype(DT) for s in ((2, 2, 64, 40), (2, 2, 77, 40), (2, 2, 77, 40))]
    np.testing.assert_allclose(run_on_cpu(rewritten, values)[0], run_on_cpu(mod, values)[0], rtol=1e-5, atol=1e-4)


def test_clip_attention_pads_rows_in_the_kernel_and_a_softmax_output_apart():
    """CLIP's 77 tokens: the queries' rows are padded to 96 inside the GEMM (zeros read, rows
    sliced off after), the keys' and values' with elementwise pads; the softmax's output keeps
    Relax's pad, a kernel of its own (joined to the softmax, no rule would schedule it)."""
    from tvm import relax

    bb = relax.BlockBuilder()
    t = compat.tensor_info
    q, k, v = (relax.Var(name, t((1, 2, 77, 64), DT)) for name in "qkv")
    with bb.function("main", [q, k, v]):
        with bb.dataflow():
            scores = bb.emit(relax.op.matmul(q, relax.op.permute_dims(k, [0, 1, 3, 2]), out_dtype=DT))
            probs = bb.emit(relax.op.nn.softmax(scores, axis=-1))
            out = bb.emit_output(relax.Tuple([bb.emit(relax.op.matmul(probs, v, out_dtype=DT))]))
        bb.emit_func_output(out)
    mod = bb.get()
    rewritten = subgroup_gemm_pass(gpu=False)(mod)
    assert gemm_names(rewritten) == ["sgemm_2x96x64x80_kn_r77", "sgemm_2x96x96x64_nk_r77"]
    script = rewritten.script()
    assert len(re.findall(r"R\.call_tir\((?:cls\.)?zero_pad", script)) == 2 and script.count("R.nn.pad(") == 1
    assert re.search(r"R\.nn\.pad\(lv\d+", script) and "softmax" in script
    tf = relax.transform
    annotated = pad_apart.make(None, None)(tf.AnnotateTIROpPattern()(tf.LegalizeOps()(rewritten)))
    kernels = [g.name_hint for g, f in tf.FuseTIR()(tf.FuseOps()(annotated)).functions_items()]
    assert "pad" in kernels and not [name for name in kernels if "softmax" in name and "pad" in name]
    rng = np.random.default_rng(7)
    values = [rng.standard_normal((1, 2, 77, 64)).astype(DT) for _ in range(3)]
    np.testing.assert_allclose(run_on_cpu(rewritten, values)[0], run_on_cpu(mod, values)[0], rtol=1e-5, atol=1e-5)


def test_split_k_partials_add_up_to_the_product():
    """An fp16 GEMM with one output tile and K = 1024 is split in 4: f32 partial sums, added and
    cast back in the graph, on the CPU."""
    from tvm import relax

    bb = relax.BlockBuilder()
    x = relax.Var("x", compat.tensor_info((1, 64, 1024), "float16"))
    w = relax.Var("w", compat.tensor_info((1024, 64), "float16"))
    with bb.function("main", [x, w]):
        with bb.dataflow():
            out = bb.emit_output(relax.Tuple([bb.emit(relax.op.matmul(x, w, out_dtype="float16"))]))
        bb.emit_func_output(out)
    rewritten = subgroup_gemm_pass(gpu=False)(bb.get())
    assert gemm_names(rewritten) == ["sgemm_1x64x64x1024_kn_k4"]
    assert "gemm_parts_sum" in rewritten.script()
    rng = np.random.default_rng(3)
    values = [rng.integers(-1, 2, (1, 64, 1024)).astype("float16"), rng.integers(-1, 2, (1024, 64)).astype("float16")]
    got = run_on_cpu(rewritten, values)[0]
    np.testing.assert_array_equal(got, values[0].astype(np.float32) @ values[1].astype(np.float32))


def test_the_gpu_kernel_launches_the_grid_its_wgsl_assumes():
    from wsd.passes.subgroup_gemm import THREADS, gemm_func

    for spec in (
        Gemm(2, 64, 256, 288, "float16", left_batched=False, right_batched=True, right_nk=False).with_tile(),
        Gemm(2, 1280, 64, 11520, "float16", False, True, False).with_tile(),  # K split in 4
    ):
        func = gemm_func(spec, gpu=True)
        bound = re.finditer(r"T\.thread_binding\((\d+), thread=\"(\w+\.\w)\"\)", func.script())
        extents = {m.group(2): int(m.group(1)) for m in bound}
        assert extents == {"blockIdx.y": spec.grid()[1], "blockIdx.x": spec.grid()[0], "threadIdx.x": THREADS}


def test_tiles_and_split_k_follow_the_probe():
    """The choices the H100 probe measured fastest at the SD 1.5 UNet's own GEMMs (docs/gpu.md)."""

    def plan(*shape, nk=False):
        g = Gemm(*shape, "float16", left_batched=nk, right_batched=not nk, right_nk=nk).with_tile()
        return g.tile_m, g.tile_n, g.split, g.k_tile

    assert plan(2, 320, 4096, 2880) == (64, 64, 1, 32)  # the 64x64 level's conv: 640 workgroups
    assert plan(2, 640, 1024, 5760) == (64, 64, 1, 32)  # 32x32 level: 320 workgroups, no split
    assert plan(2, 1280, 256, 11520) == (64, 64, 4, 32)  # 16x16 level: 160 workgroups, K in 4
    assert plan(2, 1280, 64, 11520) == (64, 64, 4, 32)  # 8x8 level: 40 workgroups
    assert plan(1, 8192, 2560, 320, nk=True) == (128, 128, 1, 32)  # the geglu linear: 1280 big tiles
    assert plan(1, 512, 1280, 1280, nk=True) == (64, 64, 4, 32)  # 160 workgroups: parts of 320
    assert plan(1, 96, 64, 48, nk=True) == (32, 64, 1, 16)  # 96 rows are no 64 multiple; K tiles of 16
    fp32 = Gemm(2, 1280, 64, 11520, "float32", False, True, False).with_tile()
    assert fp32.split == 4 and fp32.k_tile == 16  # fp32 GEMMs run tiled: split as fp16, K tiles of 16


# --- the WGSL, executed: its offsets, strides, barriers and subgroups against numpy -----------

TVM_HEADER = (
    "@group(0) @binding(0) var<storage, read_write> gemm_ptr : array<{out}>;\n"
    "@group(0) @binding(1) var<storage, read> left_ptr : array<f16>;\n"
    "@group(0) @binding(2) var<storage, read> right_ptr : array<f16>;\n\n"
    "struct PODArgs {{\n  packGridDimX: u32\n}}\n@group(0) @binding(3) var<uniform> podArgs : PODArgs;\n"
    "fn x() {{\n  if (blockIdx.z * gridDim.x + blockIdx.x > podArgs.packGridDimX) {{ return; }}\n"
)


def operands(spec, seed=1):
    rng = np.random.default_rng(seed)
    left = rng.integers(-3, 4, (spec.batch if spec.left_batched else 1, spec.left_rows, spec.k)).astype(np.float64)
    rshape = (spec.n, spec.k) if spec.right_nk else (spec.k, spec.n)
    right = rng.integers(-3, 4, (spec.batch if spec.right_batched else 1, *rshape)).astype(np.float64)
    return left, right


def expected(spec, left, right):
    """out[b, s] = the product over the s-th part of K."""
    r = np.swapaxes(right, 1, 2) if spec.right_nk else right
    left = np.pad(left, ((0, 0), (0, spec.m - left.shape[1]), (0, 0)))  # the rows past the left's: zeros
    part = spec.k // spec.split
    parts = [left[..., s * part : (s + 1) * part] @ r[:, s * part : (s + 1) * part] for s in range(spec.split)]
    return np.broadcast_to(np.stack(parts, axis=1), (spec.batch, spec.split, spec.m, spec.n))


def run_swap(spec, code, left, right):
    out = np.full((spec.batch, spec.split, spec.m, spec.n), np.nan)
    wgsl_sim.run(code, spec.grid(), {"left_ptr": left, "right_ptr": right, "gemm_ptr": out})
    return out


GEMM_SPECS = [
    Gemm(2, 64, 128, 96, "float16", left_batched=False, right_batched=True, right_nk=False, tile_m=64, tile_n=32),
    Gemm(1, 96, 64, 48, "float16", left_batched=True, right_batched=False, right_nk=True, tile_m=32, tile_n=64),
    Gemm(3, 32, 64, 32, "float16", left_batched=True, right_batched=True, right_nk=True, tile_m=32, tile_n=32),
    Gemm(1, 128, 128, 64, "float16", left_batched=False, right_batched=True, right_nk=False, tile_m=128, tile_n=128),
    Gemm(2, 64, 32, 512, "float16", False, True, False, tile_m=32, tile_n=32, split=4),
    Gemm(1, 64, 64, 256, "float16", True, False, True, tile_m=64, tile_n=64, split=2),
    Gemm(1, 64, 64, 48, "float16", True, False, True, tile_m=32, tile_n=64, rows=45),
    Gemm(3, 32, 32, 64, "float16", True, True, False, tile_m=32, tile_n=32, split=2, rows=2),
    # tiles set apart from with_tile's choice: rows and columns differ, a K tile of 16 where 48
    # is no multiple of 32 (its copy leaves half the invocations idle), f32 partials of split K,
    # a left matrix of fewer rows than the GEMM's (read as zeros past them: a tile half past its end)
]
GEMM_IDS = ["conv", "linear-kt16", "batched-nk", "tile-128", "split-k4", "split-k2-nk", "rows-45", "batched-rows-2"]


@pytest.mark.parametrize("spec", GEMM_SPECS, ids=GEMM_IDS)
def test_the_subgroup_wgsl_computes_the_gemm(spec):
    code = subgroup_wgsl(spec, "gemm_kernel", TVM_HEADER.format(out="f32" if spec.split > 1 else "f16"))
    assert "@compute @workgroup_size(128, 1, 1)" in code and "fn gemm_kernel(" in code
    assert "podArgs.packGridDimX) { return; }" in code and "@binding(3) var<uniform> podArgs" in code
    assert "left_ptr : array<vec4<u32>>" in code and "right_ptr : array<vec4<u32>>" in code
    # what NVIDIA's Vulkan driver offers through Dawn
    assert of_shaders({"gemm": code})["maxComputeWorkgroupStorageSize"] <= 32768
    left, right = operands(spec)
    np.testing.assert_array_equal(run_swap(spec, code, left, right), expected(spec, left, right))


def image_cols(conv, image):
    """numpy im2col of image[b, c, h, w]: (b, c*kh*kw, ho*wo), zero in the padding."""
    (sh, sw), (top, left), (dh, dw) = conv.stride, conv.padding, conv.dilation
    ho = conv.out_height  # padded at the bottom and right as far as the output reaches
    padded = np.pad(image, ((0, 0), (0, 0), (top, top + ho * sh), (left, left + conv.out_width * sw)))
    taps = [
        padded[:, :, i * dh : i * dh + (ho - 1) * sh + 1 : sh, j * dw : j * dw + (conv.out_width - 1) * sw + 1 : sw]
        for i in range(conv.kh)
        for j in range(conv.kw)
    ]  # each (b, c, ho, wo)
    cols = np.stack(taps, axis=2)  # (b, c, kh*kw, ho, wo)
    return cols.reshape(image.shape[0], -1, ho * conv.out_width)


CONV_CASES = [
    (Conv(16, 8, 8, 3, 3, (1, 1), (1, 1), (1, 1), 8, 8), 32, 1, 0),
    (Conv(16, 8, 24, 3, 3, (1, 1), (1, 1), (1, 1), 8, 24), 32, 1, 0),  # runs inside a row and at both ends
    (Conv(16, 16, 16, 3, 3, (2, 2), (1, 1), (1, 1), 8, 8), 64, 1, 0),
    (Conv(32, 8, 8, 3, 3, (1, 1), (1, 1), (1, 1), 8, 8), 32, 2, 0),
    (Conv(16, 8, 16, 3, 3, (1, 1), (2, 2), (2, 2), 8, 16), 32, 1, 0),  # dilated
    (Conv(16, 9, 17, 3, 3, (2, 2), (0, 0), (1, 1), 4, 8), 32, 1, 0),  # padded at the bottom and right only
    (Conv(16, 8, 8, 3, 3, (1, 1), (1, 1), (1, 1), 8, 8), 32, 1, 3),
]
CONV_IDS = ["3x3", "3x3-wide", "stride-2", "split-k2", "dilation-2", "asymmetric", "3-channels"]


def conv_case(conv, m, split, rows):
    """A CONV_CASES entry as (the implicit GEMM's spec, its left matrix, the image, numpy's product)."""
    k = conv.channels * conv.kh * conv.kw
    spec = Gemm(2, m, conv.out_height * conv.out_width, k, "float16", False, True, False, 32, 32, split, conv, rows)
    rng = np.random.default_rng(5)
    left = rng.integers(-3, 4, (1, spec.left_rows, spec.k)).astype(np.float64)
    image = rng.integers(-3, 4, (2, conv.channels, conv.height, conv.width)).astype(np.float64)
    return spec, left, image, expected(spec, left, image_cols(conv, image))


@pytest.mark.parametrize("conv, m, split, rows", CONV_CASES, ids=CONV_IDS)
def test_the_implicit_gemm_wgsl_computes_the_conv(conv, m, split, rows):
    """The right matrix read from the image in place: the padding, the stride, the dilation and
    the K parts against numpy's im2col. Stride-1 convs read the image 16 bytes at a time and
    shift the halves into place; the others read it as halves. A conv of 3 output channels (the
    VAE's last) reads zeros past its weight's 3 rows."""
    spec, left, image, want = conv_case(conv, m, split, rows)
    code = subgroup_wgsl(spec, "gemm_kernel", TVM_HEADER.format(out="f32" if split > 1 else "f16"))
    vec4 = conv.stride[1] == conv.dilation[1] == 1
    assert "left_ptr : array<vec4<u32>>" in code
    assert f"right_ptr : array<{'vec4<u32>' if vec4 else 'f16'}>" in code
    np.testing.assert_array_equal(run_swap(spec, code, left, image), want)


def test_the_simulator_catches_a_wrong_stride_and_a_missing_barrier():
    """The simulator is not a mirror of the generator: a WGSL that reads B's tile with the wrong
    stride computes something else, and one without the barrier after the copy reads workgroup
    memory before it is written (NaN)."""
    spec = Gemm(1, 64, 64, 64, "float16", False, True, False, tile_m=64, tile_n=64)
    code = subgroup_wgsl(spec, "gemm_kernel", TVM_HEADER.format(out="f16"))
    left, right = operands(spec, seed=2)
    want = expected(spec, left, right)
    strided = code.replace("false, 72u);\n", "false, 64u);\n")
    assert strided != code
    assert not np.array_equal(run_swap(spec, strided, left, right), want)
    racy = code.replace("    workgroupBarrier();\n    if (k0", "    if (k0", 1)
    assert racy != code
    assert not np.array_equal(run_swap(spec, racy, left, right), want)


def test_the_simulator_catches_a_scratch_tile_read_before_its_barrier():
    """The f16 epilogue reads back the fragment the subgroup stored to its scratch tile: without
    the barrier between, the lanes read what was there before."""
    spec = Gemm(1, 64, 64, 64, "float16", False, True, False, tile_m=64, tile_n=64)
    code = subgroup_wgsl(spec, "gemm_kernel", TVM_HEADER.format(out="f16"))
    left, right = operands(spec, seed=3)
    racy = code.replace("  workgroupBarrier();\n  {\n    let c", "  {\n    let c")
    assert racy != code
    assert not np.array_equal(run_swap(spec, racy, left, right), expected(spec, left, right))


def test_the_simulator_refuses_a_fragment_offset_that_differs_within_a_subgroup():
    spec = Gemm(1, 32, 32, 32, "float16", True, False, False, tile_m=32, tile_n=32)
    code = subgroup_wgsl(spec, "gemm_kernel", TVM_HEADER.format(out="f16")).replace(
        "(sr + 0u) * 40u + kk", "(sr + lane % 2u) * 40u + kk"
    )
    left, right = operands(spec)
    with pytest.raises(AssertionError, match="differs between invocations"):
        run_swap(spec, code, left, right)


def test_a_shader_without_the_gemm_bindings_is_refused():
    spec = Gemm(1, 32, 32, 32, "float16", True, False, False).with_tile()
    with pytest.raises(ValueError, match="left, right, gemm"):
        subgroup_wgsl(spec, "k", "@group(0) @binding(0) var<storage, read_write> out_ptr : array<f16>;\n")


def test_a_shader_with_an_extra_binding_of_a_known_name_is_refused():
    spec = Gemm(1, 32, 32, 32, "float16", True, False, False).with_tile()
    extra = TVM_HEADER.format(out="f16") + "@group(0) @binding(4) var<storage, read> left_1_ptr : array<f16>;\n"
    with pytest.raises(ValueError, match="left, right, gemm"):
        subgroup_wgsl(spec, "k", extra)


def test_a_webgpu_build_ships_one_swap_per_fp16_gemm():
    """The real codegen's shader is what the swap is made from (bindings named after the GEMM's
    parameters, output first); an fp32 build has no tensor-core swaps, only tiled ones."""
    import tvm

    from wsd import tiled_gemm
    from wsd.kernels import signatures, unplanned
    from wsd.passes.options import PassOptions
    from wsd.passes.pipeline import apply, build
    from wsd.wgsl import shaders_of

    target = compat.webgpu_target()
    for dtype, want in (("float16", 9), ("float32", 0)):
        mod, _ = small_graph(dtype)
        with target, tvm.transform.PassContext(opt_level=3):
            mod = apply(mod, target, PassOptions(subgroup_matrix=True))
        shaders = shaders_of(build(mod, target).mod)
        # relax.build fuses nothing more: every shader is one of the kernels the pipeline made
        assert unplanned(shaders, signatures(mod)) == []
        swaps = overrides(mod, shaders)
        tiled = tiled_gemm.overrides(mod, shaders)  # every GEMM, for devices without tensor cores
        assert len(swaps) == want and len(tiled) == 9 and swaps.keys() <= tiled.keys()
        for entry, code in [*swaps.items(), *tiled.items()]:
            assert entry in shaders and f"fn {entry}(" in code
            # the same buffers in the same slots with the same access; the operands read as vec4<u32>
            binding = re.compile(r"^@group\(0\) @binding\((\d)\) var<([^>]*)> (\w+) : ", re.M)
            assert binding.findall(shaders[entry]) and binding.findall(code) == binding.findall(shaders[entry])


@pytest.mark.browser
@pytest.mark.parametrize("implicit", [True, False], ids=["implicit", "im2col"])
def test_the_rewritten_graph_runs_on_webgpu(runner, runner_url, kit, implicit, monkeypatch):
    """The rewritten graph (im2col or the image read in place; GEMM kernels: TVM's, then the
    tiled WGSL, as SwiftShader has no subgroup matrices) compiled for WebGPU, run in Chromium,
    equals the original graph on the CPU. The rewrite on a
    whole model: the gate passed 15/15 on SwiftShader on sd15-tiny built with --subgroup-matrix
    (2026-12-05), and on an NVIDIA adapter with the tensor-core shaders swapped in (docs/gpu.md)."""
    import tvm

    from wsd import tiled_gemm
    from wsd.host.modules import run_entry
    from wsd.passes import subgroup_gemm
    from wsd.passes.options import PassOptions
    from wsd.passes.pipeline import apply, build
    from wsd.webrt import wasm_fcompile
    from wsd.wgsl import shaders_of

    monkeypatch.setattr(subgroup_gemm, "IMPLICIT_ABOVE", 0 if implicit else 2**40)
    mod, values = small_graph()
    target = compat.webgpu_target()
    with target, tvm.transform.PassContext(opt_level=3):
        built = apply(mod, target, PassOptions(subgroup_matrix=True))
    assert len(gemm_names(built)) == 9 and sum("_conv3x3" in n for n in gemm_names(built)) == (3 if implicit else 0)
    executable = build(built, target)
    _, artifacts = runner_url
    name = f"sgemm-{'implicit' if implicit else 'im2col'}.wasm"
    executable.export_library(str(artifacts / name), fcompile=wasm_fcompile(kit))
    want = run_on_cpu(mod, values)
    # TVM's GEMM kernels, then the tiled WGSL a build ships for devices without tensor cores
    tiled = tiled_gemm.overrides(built, shaders_of(executable.mod))
    assert len(tiled) == 9
    # and a replacement the device refuses (here: WGSL that does not compile) runs TVM's kernel
    broken = dict(tiled, **{next(iter(tiled)): "fn broken( {"})
    for shaders, refused in ((None, 0), (tiled, 0), (broken, 1)):
        ran = run_entry(runner, f"/a/{name}", "main", values, shaders=shaders)
        assert len(ran.shader_fallbacks) == refused
        for expect, out in zip(want, ran.outputs, strict=True):
            np.testing.assert_allclose(out, expect, rtol=1e-4, atol=1e-3)
