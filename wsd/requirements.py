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


def kernel_buffers(mod):
    """(kernel, buffer, bytes) for every buffer a compiled kernel binds (static shapes; a
    symbolic extent counts 0: unknown until run time)."""
    import tvm

    from wsd.passes.ir import is_prim_func, param_buffers

    for gvar, func in mod.functions_items():
        if not is_prim_func(func):
            continue
        for buf in param_buffers(func):
            elems = 1
            for dim in buf.shape:
                try:
                    elems *= int(dim)
                except (TypeError, ValueError):
                    elems = 0
                    break
            yield gvar.name_hint, str(buf.name), elems * ((tvm.DataType(str(buf.dtype)).bits + 7) // 8)


def largest_kernel_buffer(mod) -> int:
    """Bytes of the largest buffer any compiled kernel binds (static shapes)."""
    return max((size for _, _, size in kernel_buffers(mod)), default=0)


def check_bindings(mod, limit: int | None) -> None:
    """BuildError naming every kernel that binds a buffer over `limit` bytes (`--max-binding`):
    a device whose maxStorageBufferBindingSize is the limit could not run it."""
    if not limit:
        return
    from wsd.errors import BuildError

    over = sorted({(k, b, n) for k, b, n in kernel_buffers(mod) if n > limit}, key=lambda x: (-x[2], x[0], x[1]))
    if over:
        shown = "; ".join(f"{k} binds {b} ({_human(n)})" for k, b, n in over[:5])
        more = f" and {len(over) - 5} more" if len(over) > 5 else ""
        raise BuildError(f"{len(over)} kernel buffer(s) exceed --max-binding {_human(limit)}: {shown}{more}")


def _human(n: int) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.4g} {unit}"
    return f"{n} B"


def parse_size(text: str) -> int:
    """'1GiB', '512MiB', '1073741824' -> bytes."""
    units = {"": 1, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "KB": 10**3, "MB": 10**6, "GB": 10**9}
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", str(text))
    if not match or match.group(2).upper() not in units:
        raise ValueError(f"{text!r} is not a size (e.g. 1GiB, 512MiB, or bytes)")
    return int(float(match.group(1)) * units[match.group(2).upper()])


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
