"""Known TVM drift, handled in one place: the rest of wsd imports these instead of guessing.

Each shim names the release that moved the thing (apache-tvm 0.25-0.27 are supported), and
tests/test_wsd/test_compat.py checks each against the installed TVM.
"""

from __future__ import annotations


def tir():
    """The TensorIR module: `tvm.tir`, renamed `tvm.tirx` in 0.27."""
    import tvm

    return getattr(tvm, "tirx", None) or tvm.tir


def scheduled_attr() -> str:
    """The PrimFunc attribute that marks a kernel as scheduled (follows the tir -> tirx rename)."""
    import tvm

    return "tirx.is_scheduled" if hasattr(tvm, "tirx") else "tir.is_scheduled"


def disable_storage_rewrite_key() -> str:
    """The PassContext config that turns StorageRewrite off (tir. -> tirx. in 0.27)."""
    import tvm

    known = tvm.transform.PassContext.list_configs()
    return next(k for k in ("tirx.disable_storage_rewrite", "tir.disable_storage_rewrite") if k in known)


def schedule_class():
    """TensorIR's Schedule: `tvm.tir.Schedule`, moved to `tvm.s_tir.Schedule` in 0.24."""
    try:
        from tvm.s_tir import Schedule
    except ImportError:  # pragma: no cover (tvm < 0.24 is outside the supported range)
        from tvm.tir import Schedule
    return Schedule


def get_block(sch, name: str):
    """A schedule's block by name: `Schedule.get_block`, `get_sblock` in 0.27 (blocks became sblocks)."""
    getter = getattr(sch, "get_sblock", None) or sch.get_block
    return getter(name)


def dlight():
    """dlight's schedule rules: `tvm.dlight`, moved under `tvm.s_tir` in 0.24."""
    try:
        from tvm.s_tir import dlight
    except ImportError:  # pragma: no cover (tvm < 0.24 is outside the supported range)
        from tvm import dlight
    return dlight


def meta_schedule():
    """MetaSchedule: `tvm.meta_schedule`, moved under `tvm.s_tir` in 0.24."""
    try:
        from tvm.s_tir import meta_schedule
    except ImportError:  # pragma: no cover
        from tvm import meta_schedule
    return meta_schedule


def tensor(array, device):
    """A runtime tensor from numpy: `tvm.nd.array` became `tvm.runtime.tensor` (NDArray -> Tensor, 0.22)."""
    import tvm

    make = getattr(tvm.runtime, "tensor", None)
    return make(array, device) if make is not None else tvm.nd.array(array, device)


def tensor_address(t) -> int:
    """Where a runtime tensor's data starts: `Tensor.data_ptr()` (tvm-ffi); older NDArrays only
    expose their DLTensor through `.handle`."""
    if hasattr(t, "data_ptr"):
        return int(t.data_ptr())
    dl = t.handle.contents  # pragma: no cover (TVM < 0.22)
    return int(dl.data or 0) + int(dl.byte_offset)  # pragma: no cover


def tensor_info(shape, dtype: str):
    """Relax's tensor annotation: `relax.TensorStructInfo`, renamed `relax.TensorType` (StructInfo -> Type) in 0.27."""
    from tvm import relax

    cls = getattr(relax, "TensorStructInfo", None) or relax.TensorType
    return cls(shape, dtype)


def type_of(expr):
    """A Relax expression's type: `struct_info` up to TVM 0.26, `ty` from 0.27."""
    info = getattr(expr, "struct_info_", None)
    if info is not None:
        return info
    try:
        return expr.struct_info
    except (AttributeError, ValueError):
        return getattr(expr, "ty", None)


def return_type(func):
    """A Relax function's declared return type: `ret_struct_info` up to TVM 0.26, `ret_ty` from 0.27."""
    return func.ret_ty if hasattr(func, "ret_ty") else func.ret_struct_info


def param_buffers(func) -> list:
    """A PrimFunc's parameter buffers: `buffer_map` before 0.27, typed params after."""
    if hasattr(func, "buffer_map"):
        return [func.buffer_map[p] for p in func.params if p in func.buffer_map]
    return [p for p in func.params if hasattr(p, "shape") and p.shape is not None]


def region_dtype(region) -> str:
    """The dtype of a block's read/write region: a BufferRegion's `buffer` before 0.27, a
    TensorRegion's `source` after."""
    holder = getattr(region, "buffer", None)
    return str((holder if holder is not None else region.source).dtype)


def webgpu_target():
    """WebGPU with a wasm32 host: the dict form (CLI-form strings are refused since 0.24)."""
    import tvm

    return tvm.target.Target({"kind": "webgpu"}, host={"kind": "llvm", "mtriple": "wasm32-unknown-unknown-wasm"})


# The native module is the harness's CPU reference, not something shipped: LLVM at -O1 builds
# sd15-tiny's module in 14 s instead of 19 s (fp16, its half arithmetic emulated: 14 s instead of
# 53 s) and runs the native gate as fast as the default -O3 (9.8 s against 9.1 s); -O0 builds in
# 4 s but the gate takes 14.5 s (measured 2026-12-05, TVM 0.27).
NATIVE_OPT_LEVEL = 1


def llvm_target():
    import tvm

    return tvm.target.Target({"kind": "llvm", "opt-level": NATIVE_OPT_LEVEL})


def tensor_cache():
    """(dump, load) of tvmjs tensor-cache shards: the NDArray-named functions became Tensor-named in 0.22."""
    from tvm.contrib import tvmjs

    dump = getattr(tvmjs, "dump_tensor_cache", None) or tvmjs.dump_ndarray_cache
    load = getattr(tvmjs, "load_tensor_cache", None) or tvmjs.load_ndarray_cache
    return dump, load
