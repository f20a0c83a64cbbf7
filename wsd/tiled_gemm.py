"""The GEMMs of a `--subgroup-matrix` build as register-tiled WGSL, for adapters without
subgroup matrices (tensor cores).

Where the device cannot run the tensor-core WGSL (wsd/passes/subgroup_gemm.py), the rewritten
graph's GEMM kernels would otherwise run TVM's plain schedule for them: one invocation per output,
a serial K loop, correct and slow. This is the kernel the page swaps in there instead
(shaders/tiled-gemm.json; web/lib/assets.js): the same bindings, launch grid and staged copies of
the K tiles into workgroup memory as the tensor-core kernel (16-byte loads, the next tile in
flight, a conv's image read in place), and the product on ordinary invocations: 256 per
workgroup in a 16x16 grid, each summing an (edge / 16)^2 block of the output tile in f32
registers (8x8 at a 128x128 tile). An invocation's rows and columns are 16 apart, so the 16
invocations of a row read 16 neighbouring halves of B and write 16 neighbouring outputs.
"""

from __future__ import annotations

from wsd.passes import subgroup_gemm as gemm
from wsd.passes.ir import kernel_swaps

SIDE = 16  # invocations along each edge of the output tile
THREADS = SIDE * SIDE


def tiled_wgsl(spec: gemm.Gemm, entry: str, compiled: str) -> str:
    """WGSL computing the GEMM on plain invocations, for the kernel TVM compiled as `compiled`
    (its bindings, uniform and grid kept, as `subgroup_gemm.subgroup_wgsl` keeps them)."""
    named = gemm.storage_bindings(compiled, entry, ("left", "right", "gemm"))
    left, right, out = (named[n] for n in ("left", "right", "gemm"))
    kt = spec.k_tile
    rm, rn = spec.tile_m // SIDE, spec.tile_n // SIDE
    a_stride, b_stride = gemm.tile_strides(spec)
    _, arrays = gemm.tile_copies(spec)
    enables = ("enable f16;",) if spec.dtype == "float16" else ()
    lines = gemm.preamble(compiled, gemm.operands_retyped(spec, left, right), enables=enables)
    lines += ["", *arrays, "", *gemm.entry_lines(entry, compiled, THREADS, subgroups=False)]
    lines += gemm.tile_origin(spec)
    lines += [f"  let ty = li / {SIDE}u;", f"  let tx = li % {SIDE}u;"]
    lines += [f"  var acc{i}_{j} = 0.0;" for i in range(rm) for j in range(rn)]
    compute = [f"    for (var kk = 0u; kk < {kt}u; kk += 1u) {{"]
    # f16 operands: each product in f32 (the page's fp16 builds sum in f32 everywhere)
    compute += [f"      let a{i} = f32(As[(ty + {i * SIDE}u) * {a_stride}u + kk]);" for i in range(rm)]
    for j in range(rn):
        at = f"(tx + {j * SIDE}u) * {b_stride}u + kk" if spec.right_nk else f"kk * {b_stride}u + tx + {j * SIDE}u"
        compute.append(f"      let b{j} = f32(Bs[{at}]);")
    compute += [f"      acc{i}_{j} = fma(a{i}, b{j}, acc{i}_{j});" for i in range(rm) for j in range(rn)]
    compute.append("    }")
    lines += gemm.staged_k_loop(spec, left, right, THREADS, compute)
    lines.append(f"  let obase = bs * {spec.m * spec.n}u + (m0 + ty) * {spec.n}u + n0 + tx;")
    cast = "f16" if spec.out_dtype == "float16" else ""
    for i in range(rm):
        for j in range(rn):
            lines.append(f"  {out}[obase + {i * SIDE * spec.n + j * SIDE}u] = {cast}(acc{i}_{j});")
    lines.append("}")
    return "\n".join(lines) + "\n"


def overrides(mod, shaders: dict[str, str]) -> dict[str, str]:
    """Entry point -> tiled WGSL, for each GEMM kernel (fp16 or fp32) of a scheduled module."""

    def write(fields, entry, compiled):
        return tiled_wgsl(gemm.Gemm(**fields), entry, compiled)

    return kernel_swaps(mod, shaders, gemm.ATTR, write)


def requirements(swaps: dict[str, str], path: str) -> dict:
    """The manifest's `tiled_gemm` section: the file and the workgroup memory the page checks."""
    from wsd.requirements import of_shaders

    return {
        "shaders": path,
        "kernels": len(swaps),
        "workgroup_storage": of_shaders(swaps)["maxComputeWorkgroupStorageSize"],
    }
