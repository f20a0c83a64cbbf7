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
    requirements.check_bindings(Mod, 4 * 8 * 4)  # at the limit is allowed
    requirements.check_bindings(Mod, None)
    with pytest.raises(
        BuildError,
        match=r"2 kernel buffer\(s\) exceed --max-binding 127 B: add_bias binds a \(128 B\); add_bias binds c",
    ):
        requirements.check_bindings(Mod, 4 * 8 * 4 - 1)


@pytest.mark.parametrize(
    ("text", "size"), [("1GiB", 2**30), ("512MiB", 2**29), ("1073741824", 2**30), ("1.5 KiB", 1536), ("2GB", 2 * 10**9)]
)
def test_sizes_parse(text, size):
    assert requirements.parse_size(text) == size


def test_a_bad_size_is_refused():
    with pytest.raises(ValueError, match="is not a size"):
        requirements.parse_size("lots")


def test_capture_faults_set_the_wrapper_attribute_and_are_recorded():
    from wsd.entries import SDXL_ENTRIES

    record = {}
    entries = faults.with_capture_faults(SDXL_ENTRIES, ("last-hidden-state@clip", "dropped-bias@unet"), record)
    assert record == {"last-hidden-state@clip": "clip"}  # kernel faults are the pass pipeline's
    assert [e.name for e in entries] == [e.name for e in SDXL_ENTRIES] and entries[0] is not SDXL_ENTRIES[0]
    with pytest.raises(BuildError, match="has no entry point 'clip2'"):
        faults.with_capture_faults(SDXL_ENTRIES, ("pooled-from-first-encoder@clip2",), {})


def test_unknown_fault_is_refused():
    with pytest.raises(BuildError, match="unknown fault"):
        faults.parse("flip-bits@clip")
    assert faults.parse("dropped-bias@unet") == ("dropped-bias", "unet")
