"""What the manifest says a model needs from the adapter, and the harness's build-side helpers."""

import pytest

from wsd import faults, requirements
from wsd.errors import BuildError

SHADER = """
@group(0) @binding(0) var<storage, read_write> out : array<f32>;
@group(0) @binding(1) var<storage, read> a : array<f32>;
var<workgroup> a_shared : array<f32, 256>;
var<workgroup> b_shared : array<f16, 64>;
@compute @workgroup_size(16, 8, 2)
fn k() {}
"""


def test_shader_limits_are_parsed():
    limits = requirements.of_shaders({"k": SHADER, "small": "@compute @workgroup_size(64)\nfn s() {}"})
    assert limits["maxComputeWorkgroupSizeX"] == 64
    assert limits["maxComputeWorkgroupSizeY"] == 8 and limits["maxComputeWorkgroupSizeZ"] == 2
    assert limits["maxComputeInvocationsPerWorkgroup"] == 256
    assert limits["maxComputeWorkgroupStorageSize"] == 256 * 4 + 64 * 2
    assert limits["maxStorageBuffersPerShaderStage"] == 2


def test_largest_kernel_buffer_and_signatures():
    from tvm.script import ir as I  # noqa: N812
    from tvm.script import tirx as T  # noqa: N812

    from wsd.kernels import signatures

    @I.ir_module
    class Mod:
        @T.prim_func
        def add_bias(a: T.Buffer((4, 8), "float32"), b: T.Buffer((8,), "float32"), c: T.Buffer((4, 8), "float32")):
            for i, j in T.grid(4, 8):
                c[i, j] = a[i, j] + b[j]

    assert requirements.largest_kernel_buffer(Mod) == 4 * 8 * 4
    sig = signatures(Mod)["add_bias"]
    assert sig["outputs"] == [2] and [a["shape"] for a in sig["args"]] == [[4, 8], [8], [4, 8]]


def test_unknown_fault_is_refused():
    with pytest.raises(BuildError, match="unknown fault"):
        faults.parse("flip-bits@clip")
    assert faults.parse("drop-bias@unet") == ("drop-bias", "unet")
