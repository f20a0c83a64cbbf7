"""The register-tiled GEMM WGSL (wsd/tiled_gemm.py), executed by tests/wgsl_sim.py on the
cases the tensor-core WGSL is proven on, in fp16 (no adapter here has f16: the simulator is what
runs it) and fp32 (which SwiftShader also runs: tests/test_wsd/passes/test_subgroup_gemm.py)."""

from dataclasses import replace

import numpy as np
import pytest
from test_wsd.passes.test_subgroup_gemm import (
    CONV_CASES,
    CONV_IDS,
    GEMM_IDS,
    GEMM_SPECS,
    TVM_HEADER,
    conv_case,
    expected,
    operands,
    run_swap,
)

from wsd.passes.subgroup_gemm import Gemm
from wsd.requirements import of_shaders
from wsd.tiled_gemm import THREADS, tiled_wgsl


def header(spec):
    """TVM's bindings for the GEMM kernel: f16 or f32 operands, f32 partial sums where K is split."""
    elem = "f16" if spec.dtype == "float16" else "f32"
    return TVM_HEADER.format(out="f32" if spec.split > 1 else elem).replace("array<f16>", f"array<{elem}>")


DTYPES = pytest.mark.parametrize("dtype", ["float16", "float32"])


@DTYPES
@pytest.mark.parametrize("spec", GEMM_SPECS, ids=GEMM_IDS)
def test_the_tiled_wgsl_computes_the_gemm(spec, dtype):
    """fp16 operands (16-byte loads of 8 halves) and fp32 ones (4 floats): every layout of A and B,
    K tiles of 32 and 16, split K, a left matrix of fewer rows."""
    spec = replace(spec, dtype=dtype)
    code = tiled_wgsl(spec, "gemm_kernel", header(spec))
    assert f"@compute @workgroup_size({THREADS}, 1, 1)" in code and "fn gemm_kernel(" in code
    assert "podArgs.packGridDimX) { return; }" in code and "@binding(3) var<uniform> podArgs" in code
    assert "subgroup" not in code  # what every adapter runs (fp16: with shader-f16)
    assert ("enable f16;" in code) == (dtype == "float16")
    # the WebGPU default is 16 KiB; 128x128 tiles take more, which a device must offer (the page checks)
    assert of_shaders({"gemm": code})["maxComputeWorkgroupStorageSize"] <= 32768
    left, right = operands(spec)
    np.testing.assert_array_equal(run_swap(spec, code, left, right), expected(spec, left, right))


@DTYPES
@pytest.mark.parametrize("conv, m, split, rows", CONV_CASES, ids=CONV_IDS)
def test_the_tiled_implicit_gemm_computes_the_conv(conv, m, split, rows, dtype):
    """fp32 images are read element by element (runs of 8 positions), fp16 ones 16 bytes at a time
    where the stride allows."""
    spec, left, image, want = conv_case(conv, m, split, rows)
    spec = replace(spec, dtype=dtype)
    code = tiled_wgsl(spec, "gemm_kernel", header(spec))
    assert ("right_ptr : array<vec4<u32>>" in code) == (dtype == "float16" and conv.stride[1] == conv.dilation[1] == 1)
    np.testing.assert_array_equal(run_swap(spec, code, left, image), want)


def test_the_simulator_catches_a_tiled_kernel_that_reads_the_wrong_row_or_column():
    """Each invocation's rows and columns are 16 apart: a block of neighbouring rows, or B read
    as if it were stored [N, K], computes something else."""
    spec = Gemm(1, 64, 64, 64, "float16", False, True, False, tile_m=64, tile_n=64)
    code = tiled_wgsl(spec, "gemm_kernel", header(spec))
    left, right = operands(spec, seed=3)
    want = expected(spec, left, right)
    for wrong in (
        code.replace("As[(ty + 16u) * 40u + kk]", "As[(ty + 1u) * 40u + kk]"),
        code.replace("Bs[kk * 72u + tx + 16u]", "Bs[(tx + 16u) * 72u + kk]"),
        code.replace("gemm_ptr[obase + 16u] = f16(acc0_1);", "gemm_ptr[obase + 1u] = f16(acc0_1);"),
    ):
        assert wrong != code
        got = np.nan_to_num(run_swap(spec, wrong, left, right), nan=1e9)
        assert not np.array_equal(got, want)
