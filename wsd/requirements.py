"""What a built model needs from a WebGPU adapter, recorded in its manifest.

The page checks these before creating the device, so a GPU whose limits are too small
gets an error naming the limit, the value needed and the value present, instead of a
failed dispatch half-way through a generation.
"""

from __future__ import annotations

import re

_WORKGROUP_SIZE = re.compile(r"@workgroup_size\(\s*(\d+)\s*(?:,\s*(\d+)\s*)?(?:,\s*(\d+)\s*)?\)")
_WORKGROUP_VAR = re.compile(r"var<workgroup>\s+\w+\s*:\s*array<\s*(\w+)\s*,\s*(\d+)\s*>")
_SCALAR_BYTES = {"f32": 4, "i32": 4, "u32": 4, "f16": 2, "bool": 4}


def largest_kernel_buffer(mod) -> int:
    """Bytes of the largest buffer any compiled kernel binds (static shapes)."""
    import tvm

    from wsd.passes import is_prim_func, param_buffers

    largest = 0
    for func in mod.functions.values():
        if not is_prim_func(func):
            continue
        for buf in param_buffers(func):
            elems = 1
            for dim in buf.shape:
                try:
                    elems *= int(dim)
                except (TypeError, ValueError):
                    elems = 0  # a symbolic extent: unknown until run time
                    break
            largest = max(largest, elems * ((tvm.DataType(str(buf.dtype)).bits + 7) // 8))
    return largest


def of_shaders(shaders: dict[str, str]) -> dict[str, int]:
    """Per-shader maxima: workgroup sizes, invocations, workgroup memory, storage buffers."""
    limits = {
        "maxComputeWorkgroupSizeX": 1,
        "maxComputeWorkgroupSizeY": 1,
        "maxComputeWorkgroupSizeZ": 1,
        "maxComputeInvocationsPerWorkgroup": 1,
        "maxComputeWorkgroupStorageSize": 0,
        "maxStorageBuffersPerShaderStage": 0,
    }
    for code in shaders.values():
        for match in _WORKGROUP_SIZE.finditer(code):
            x, y, z = (int(v) if v else 1 for v in match.groups())
            limits["maxComputeWorkgroupSizeX"] = max(limits["maxComputeWorkgroupSizeX"], x)
            limits["maxComputeWorkgroupSizeY"] = max(limits["maxComputeWorkgroupSizeY"], y)
            limits["maxComputeWorkgroupSizeZ"] = max(limits["maxComputeWorkgroupSizeZ"], z)
            limits["maxComputeInvocationsPerWorkgroup"] = max(limits["maxComputeInvocationsPerWorkgroup"], x * y * z)
        shared = sum(_SCALAR_BYTES.get(t, 4) * int(n) for t, n in _WORKGROUP_VAR.findall(code))
        limits["maxComputeWorkgroupStorageSize"] = max(limits["maxComputeWorkgroupStorageSize"], shared)
        limits["maxStorageBuffersPerShaderStage"] = max(
            limits["maxStorageBuffersPerShaderStage"], code.count("var<storage")
        )
    return limits


def collect(mod, shaders: dict[str, str], dtype: str) -> dict:
    biggest = largest_kernel_buffer(mod)
    limits = {**of_shaders(shaders), "maxStorageBufferBindingSize": biggest, "maxBufferSize": biggest}
    return {"features": ["shader-f16"] if dtype == "float16" else [], "limits": limits}
