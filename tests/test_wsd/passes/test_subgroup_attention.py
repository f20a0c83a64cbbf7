"""--subgroup-matrix, fp16: attention (matmul, softmax, matmul) fused into one kernel whose
tensor-core WGSL the page swaps in. The graph rewrite is checked numerically on the CPU (fp16 has
no SwiftShader path: it lacks shader-f16); the WGSL, which only a GPU runs, by executing it
against numpy; TVM's kernel of the same grid by compiling it for WebGPU."""

from __future__ import annotations

import re

import numpy as np
import pytest
import wgsl_sim

from wsd import compat
from wsd.passes.subgroup_attention import Attention, attention_wgsl, overrides, subgroup_attention_pass
from wsd.requirements import of_shaders

F16 = "float16"

# what TVM's WebGPU codegen writes for the fused kernel: one binding per parameter, the output first
TVM_HEADER = (
    "@group(0) @binding(0) var<storage, read_write> attention_ptr : array<f16>;\n"
    "@group(0) @binding(1) var<storage, read> keyt_ptr : array<f16>;\n"
    "@group(0) @binding(2) var<storage, read> query_ptr : array<f16>;\n"
    "@group(0) @binding(3) var<storage, read> value_ptr : array<f16>;\n\n"
    "struct PODArgs {\n  packGridDimX: u32\n}\n@group(0) @binding(4) var<uniform> podArgs : PODArgs;\n"
    "fn x() {\n  if (blockIdx.z * gridDim.x + blockIdx.x > podArgs.packGridDimX) { return; }\n"
)


def captured_attention(batch, heads, rows, keys, width, scale=0.5):
    """Attention as the capture leaves it after ToMixedPrecision (dumped from sd15-tiny): the
    scores and the product batched over (batch x heads) through reshapes and broadcasts, the
    softmax in fp32 between casts."""
    from tvm import relax

    bb = relax.BlockBuilder()
    t = compat.tensor_info
    q, k, v = (relax.Var(n, t((batch, heads, r, width), F16)) for n, r in (("q", rows), ("k", keys), ("v", keys)))
    bh = batch * heads
    with bb.function("main", [q, k, v]):
        with bb.dataflow():
            qs = bb.emit(relax.op.multiply(q, relax.const(scale, F16)))
            q3 = bb.emit(
                relax.op.reshape(bb.emit(relax.op.broadcast_to(qs, (batch, heads, rows, width))), (bh, rows, width))
            )
            kt = bb.emit(relax.op.permute_dims(k, [0, 1, 3, 2]))
            kt3 = bb.emit(
                relax.op.reshape(bb.emit(relax.op.broadcast_to(kt, (batch, heads, width, keys))), (bh, width, keys))
            )
            s = bb.emit(relax.op.reshape(bb.emit(relax.op.matmul(q3, kt3, out_dtype=F16)), (batch, heads, rows, keys)))
            p = bb.emit(relax.op.nn.softmax(bb.emit(relax.op.astype(s, "float32")), axis=-1))
            p3 = bb.emit(
                relax.op.reshape(bb.emit(relax.op.broadcast_to(p, (batch, heads, rows, keys))), (bh, rows, keys))
            )
            v3 = bb.emit(relax.op.reshape(v, (bh, keys, width)))
            o = bb.emit(relax.op.matmul(bb.emit(relax.op.astype(p3, F16)), v3, out_dtype=F16))
            out = bb.emit_output(bb.emit(relax.op.reshape(o, (batch, heads, rows, width))))
        bb.emit_func_output(out)
    rng = np.random.default_rng(0)
    values = [rng.standard_normal((batch, heads, r, width)).astype(F16) for r in (rows, keys, keys)]
    return bb.get(), values


def run_on_cpu(mod, values):
    import tvm
    from tvm import relax

    ex = relax.build(relax.transform.LegalizeOps()(mod), compat.llvm_target())
    vm = relax.VirtualMachine(ex, tvm.cpu())
    return vm["main"](*[compat.tensor(v, tvm.cpu()) for v in values]).numpy()


def fused_names(mod) -> list[str]:
    return sorted(g.name_hint for g, _ in mod.functions_items() if g.name_hint.startswith("sattn_"))


@pytest.mark.parametrize("width", [16, 40], ids=["width-16", "width-40-padded"])
def test_the_fused_graph_computes_what_the_graph_did(width):
    mod, values = captured_attention(1, 2, 64, 96, width)
    fused = subgroup_attention_pass(gpu=False)(mod)
    assert fused_names(fused) == [f"sattn_2x64x96x{-(-width // 16) * 16}"]
    script = fused.script()
    assert "R.nn.softmax" not in script and "R.matmul" not in script
    q, k, v = (a.astype(np.float64) for a in values)
    want = reference(q * 0.5, np.swapaxes(k, -1, -2), v)
    got, unfused = (run_on_cpu(m, values).astype(np.float64) for m in (fused, mod))
    # the unfused graph rounds the scores to f16; the fused kernel keeps them in f32
    np.testing.assert_allclose(got, want, rtol=2e-3, atol=2e-3)
    assert np.abs(got - want).max() <= np.abs(unfused - want).max()


@pytest.mark.parametrize(
    ("rows", "keys", "width"),
    [(64, 77, 40), (48, 64, 16), (64, 64, 160)],
    ids=["text-keys", "rows-not-a-tile", "width-over-workgroup-memory"],
)
def test_shapes_that_do_not_fit_stay_unfused(rows, keys, width):
    mod, _ = captured_attention(1, 1, rows, keys, width)
    assert fused_names(subgroup_attention_pass(gpu=False)(mod)) == []


def test_an_fp32_graph_and_a_softmax_over_another_axis_stay_unfused():
    from tvm import relax

    bb = relax.BlockBuilder()
    t = compat.tensor_info
    q, k, v = (relax.Var(n, t((2, 64, 16), dt)) for n, dt in (("q", F16), ("k", F16), ("v", F16)))
    with bb.function("main", [q, k, v]):
        with bb.dataflow():
            s = bb.emit(relax.op.matmul(q, relax.op.permute_dims(k, [0, 2, 1]), out_dtype=F16))
            across = bb.emit(relax.op.nn.softmax(s, axis=1))  # over the query rows: no attention
            out = bb.emit_output(bb.emit(relax.op.matmul(across, v, out_dtype=F16)))
        bb.emit_func_output(out)
    assert fused_names(subgroup_attention_pass(gpu=False)(bb.get())) == []


def reference(query, keyt, value):
    """softmax(q k^T) v with the probabilities rounded to f16, as the unfused graph writes them."""
    s = query @ keyt
    p = np.exp(s - s.max(-1, keepdims=True))
    p = (p / p.sum(-1, keepdims=True)).astype(np.float16).astype(np.float64)
    return p @ value


def simulate(spec, code, seed=3):
    rng = np.random.default_rng(seed)
    query, keyt, value = (
        rng.standard_normal(shape).astype(np.float16).astype(np.float64)
        for shape in ((spec.batch, spec.m, spec.d), (spec.batch, spec.d, spec.n), (spec.batch, spec.n, spec.d))
    )
    out = np.full((spec.batch, spec.m, spec.d), np.nan)
    buffers = {"query_ptr": query, "keyt_ptr": keyt, "value_ptr": value, "attention_ptr": out}
    wgsl_sim.run(code, spec.grid(), buffers)
    return out, reference(query, keyt, value)


@pytest.mark.parametrize(
    "spec", [Attention(2, 64, 64, 16), Attention(1, 128, 96, 48)], ids=["two-batches", "two-row-blocks-width-48"]
)
def test_the_attention_wgsl_computes_attention(spec):
    code = attention_wgsl(spec, "attn_kernel", TVM_HEADER)
    assert "fn attn_kernel(" in code and "@binding(4) var<uniform> podArgs" in code
    assert "keyt_ptr : array<vec4<u32>>" in code and "query_ptr : array<f16>" in code
    assert of_shaders({"attn": code})["maxComputeWorkgroupStorageSize"] == spec.workgroup_bytes() <= 32768
    got, want = simulate(spec, code)
    assert not np.isnan(got).any()
    # f16 output; a probability may round the other way where exp(s - max - log sum) and
    # exp(s - max) / sum differ in the last bit
    np.testing.assert_allclose(got, want, rtol=4e-3, atol=4e-3)


@pytest.mark.parametrize(
    ("mutation", "pattern", "replacement"),
    [
        ("no rescale as the maximum grows", r"total \* exp\(mx - top\)", "total"),
        ("the second pass reads the first key tile only", r"n0 / 8u \+ e % 4u", "e % 4u"),
        ("probabilities not normalized", r"let shift = top \+ log\(.*\);", "let shift = top;"),
        ("the two halves of a row never meet", r"\(\(lane \+ 16u\) % 32u\)", "lane"),
    ],
)
def test_the_simulator_catches_a_broken_attention(mutation, pattern, replacement):
    spec = Attention(1, 64, 96, 16)
    code = attention_wgsl(spec, "attn_kernel", TVM_HEADER)
    broken = re.sub(pattern, replacement, code)
    assert broken != code, mutation
    got, want = simulate(spec, broken)
    assert not np.allclose(got, want, rtol=4e-3, atol=4e-3), mutation


def test_the_gpu_kernel_is_tvms_and_ships_a_swap():
    """TVM compiles the fused kernel's fallback for WebGPU with the grid the WGSL assumes, and the
    swap is made from its shader."""
    import tvm

    from wsd.passes.options import PassOptions
    from wsd.passes.pipeline import apply, build
    from wsd.wgsl import shaders_of

    mod, _ = captured_attention(1, 2, 64, 64, 40)
    target = compat.webgpu_target()
    with target, tvm.transform.PassContext(opt_level=3):
        mod = apply(mod, target, PassOptions(dtype=F16, subgroup_matrix=True, fused_attention=True))
    assert fused_names(mod) == ["sattn_2x64x64x48"]
    shaders = shaders_of(build(mod, target).mod)
    swaps = overrides(mod, shaders)
    assert list(swaps) == ["sattn_2x64x64x48_kernel"]
    compiled = shaders["sattn_2x64x64x48_kernel"]
    assert "@compute @workgroup_size(64, 1, 1)" in compiled  # one query row per invocation
    binding = re.compile(r"^@group\(0\) @binding\((\d)\) var<([^>]*)> (\w+) : ", re.M)
    assert binding.findall(swaps["sattn_2x64x64x48_kernel"]) == binding.findall(compiled)
