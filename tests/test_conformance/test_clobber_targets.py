"""The clobbered-input fault's target: an input the kernel reads at the index it stores to,
read by another kernel too. A build with --cse has no one-input such kernel (the SiLU of the
time embedding is taken once); a GroupNorm-and-SiLU kernel, whose input the residual add
reads later, is the target there."""

from __future__ import annotations

from conformance.faults import _clobber_targets

T = [2, 32, 8, 8]
GROUPNORM_SILU = """@group(0) @binding(0) var<storage, read_write> out_ptr : array<f32>;
@group(0) @binding(1) var<storage, read> x_ptr : array<f32>;
@group(0) @binding(2) var<storage, read> stats_ptr : array<f32>;
fn k(@builtin(local_invocation_id) threadIdx : vec3<u32>) {
  let i : i32 = i32(threadIdx.x);
  out_ptr[((v__1 * 256i) + i32(threadIdx.x))] = silu((x_ptr[((v__1 * 256i) + i32(threadIdx.x))] - stats_ptr[v__1]));
}
"""


def signature(x_readers: int, x_shape=T, dtype="float32") -> dict:
    return {
        "args": [
            {"name": "x", "shape": x_shape, "dtype": dtype, "readers": x_readers},
            {"name": "stats", "shape": [2, 8, 2], "dtype": "float32", "readers": 1},
            {"name": "out", "shape": T, "dtype": "float32"},
        ],
        "outputs": [2],
    }


def test_an_input_read_at_the_store_index_and_read_elsewhere_is_a_target():
    assert _clobber_targets("fused_group_norm_silu", signature(5), GROUPNORM_SILU) == [0]


def test_an_input_no_other_kernel_reads_is_not_a_target():
    assert _clobber_targets("fused_group_norm_silu", signature(1), GROUPNORM_SILU) == []


def test_an_input_read_at_other_indices_is_not_a_target():
    """Other invocations would read the clobbered element: the kernel would be wrong alone."""
    shifted = GROUPNORM_SILU.replace("x_ptr[((v__1 * 256i) + i32(threadIdx.x))]", "x_ptr[(i + 1i)]")
    assert _clobber_targets("fused_group_norm_silu", signature(5), shifted) == []


def test_an_input_of_another_shape_or_dtype_is_not_a_target():
    assert _clobber_targets("k", signature(5, x_shape=[2, 64, 8, 8]), GROUPNORM_SILU) == []
    assert _clobber_targets("k", signature(5, dtype="float16"), GROUPNORM_SILU) == []


def test_a_reshape_is_not_a_target():
    """It writes back the values it read: no damage to see."""
    assert _clobber_targets("reshape12", signature(5), GROUPNORM_SILU) == []
