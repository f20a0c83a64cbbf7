"""WGSL legality: types the WebGPU codegen or Dawn refuse are rewritten; Dawn checks the result.

Each case is a small torch module holding one of the patterns met in SD 1.5 and SDXL (int64
indices, a boolean mask read by another kernel, a boolean reduction, a comparison with -inf,
an argmax). It is
built for webgpu, every shader goes through Dawn, and the same pipeline built for llvm must
still compute what torch computes.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from wsd import wgsl
from wsd.capture import import_exported
from wsd.errors import BuildError
from wsd.passes.options import PassOptions
from wsd.passes.pipeline import apply, build_config


class Int64Indices(nn.Module):
    def __init__(self):
        super().__init__()
        self.table = nn.Parameter(torch.randn(16, 8))

    def forward(self, x):
        ids = torch.arange(4) + 2  # int64
        return self.table[ids] * x


class BoolMaskAcrossKernels(nn.Module):
    def forward(self, x):
        mask = x > 0
        kept = torch.where(mask, x, 0.0).sum(-1, keepdim=True)
        return kept + mask.any(-1, keepdim=True).float() + torch.where(mask, 1.0, -x)


class InfCompare(nn.Module):
    def forward(self, x):
        y = x.masked_fill(x < -1, float("-inf"))
        return torch.where(y == float("-inf"), 0.0, y) + (y != float("-inf")).float()


class ArgmaxPick(nn.Module):
    """CLIP's pooled output: the row of the first largest id (an int64 argmax, ties kept)."""

    def forward(self, x):
        ids = (x * 2).round().to(torch.int32)  # integer-valued, with ties
        first = ids.argmax(dim=-1)
        last = x.argmin(dim=0, keepdim=True)
        return x[torch.arange(x.shape[0]), first] + last.float().sum()


CASES = {"int64": Int64Indices, "bool": BoolMaskAcrossKernels, "inf": InfCompare, "argmax": ArgmaxPick}


def _build(module, x, target_name):
    import tvm
    from tvm import relax

    from wsd.build import target_of

    exported = torch.export.export(module, (torch.from_numpy(x),))
    func, params = import_exported("main", exported)
    mod = tvm.IRModule({tvm.ir.GlobalVar("main"): func})
    target = target_of(target_name)
    with target, tvm.transform.PassContext(opt_level=3):
        mod = apply(mod, target)
    with tvm.transform.PassContext(opt_level=3, config=build_config(target)):
        return relax.build(mod, target), params


@pytest.mark.parametrize("case", sorted(CASES))
def test_webgpu_shaders_are_legal(case):
    torch.manual_seed(0)
    x = np.random.default_rng(0).standard_normal((4, 8)).astype("float32")
    executable, _ = _build(CASES[case]().eval(), x, "webgpu")
    shaders = wgsl.shaders_of(executable.mod)
    assert shaders
    source = "\n".join(shaders.values())
    for bad in ("i64", "array<i8>", "array<bool>", "inff"):
        assert bad not in source, f"{bad} left in {case}"
    result = wgsl.validate(shaders)
    assert result.failures == {}


@pytest.mark.parametrize("case", sorted(CASES))
def test_legalized_graph_computes_what_torch_does(case):
    import tvm
    from tvm import relax

    torch.manual_seed(0)
    module = CASES[case]().eval()
    x = np.random.default_rng(1).standard_normal((4, 8)).astype("float32")
    executable, params = _build(module, x, "llvm")
    vm = relax.VirtualMachine(executable, tvm.cpu())
    out = vm["main"](tvm.runtime.tensor(x), [tvm.runtime.tensor(p) for _, p in params]).numpy()
    with torch.no_grad():
        want = module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(out, want, rtol=1e-6, atol=1e-6)


def test_dawn_names_the_kernel_it_refuses():
    good = "@compute @workgroup_size(1) fn ok_kernel() {}"
    bad = (
        "@group(0) @binding(0) var<storage, read_write> a : array<i8>;\n@compute @workgroup_size(1) fn bad_kernel() {}"
    )
    result = wgsl.validate({"ok_kernel": good, "bad_kernel": bad})
    assert list(result.failures) == ["bad_kernel"]
    assert "i8" in result.failures["bad_kernel"][0]
    with pytest.raises(BuildError, match=r"(?s)1 of 2 WGSL shaders fail.*bad_kernel"):
        wgsl.require_valid({"ok_kernel": good, "bad_kernel": bad})


def test_fp16_shaders_are_checked_by_tints_front_end_where_the_adapter_lacks_f16():
    """SwiftShader has no shader-f16: fp16 kernels and the tensor-core WGSL go to Dawn's null
    adapter, whose front end still refuses a wrong one (and names it); none is skipped."""
    head = "enable f16;\n@group(0) @binding(0) var<storage, read_write> a : array<f16>;\n"
    good = head + "@compute @workgroup_size(1) fn half_kernel() { a[0] = a[1] * 2.0h; }"
    bad = head + "@compute @workgroup_size(1) fn wrong_kernel() { a[0] = a[1] * 2.0f; }"  # f16 * f32
    matrix = (
        "enable f16;\nenable chromium_experimental_subgroup_matrix;\n"
        "var<workgroup> s : array<f16, 256>;\n"
        "@compute @workgroup_size(128) fn matrix_kernel() {\n"
        "  let m = subgroupMatrixLoad<subgroup_matrix_left<f16, 16, 16>>(&s, 0u, false, 16u);\n}"
    )
    result = wgsl.validate({"half_kernel": good, "wrong_kernel": bad, "matrix_kernel": matrix}, pipelines=True)
    assert list(result.failures) == ["wrong_kernel"] and not result.skipped
    assert result.front_end_only == {"half_kernel", "wrong_kernel", "matrix_kernel"}
    assert "operator * (f16, f32)" in result.failures["wrong_kernel"][0]


def test_too_many_storage_buffers_is_a_build_error():
    bindings = "\n".join(f"@group(0) @binding({i}) var<storage, read_write> b{i} : array<f32>;" for i in range(11))
    code = bindings + "\n@compute @workgroup_size(1) fn wide_kernel() {}"
    assert "wide_kernel" in wgsl.storage_buffer_overflows({"wide_kernel": code}, 10)
    with pytest.raises(BuildError, match="wide_kernel: 11 storage buffers"):
        wgsl.require_valid({"wide_kernel": code})


def test_int64_input_is_refused_with_advice():
    import tvm

    from wsd.build import target_of

    class TakesInt64(nn.Module):
        def forward(self, ids):
            return ids * 2

    exported = torch.export.export(TakesInt64(), (torch.arange(4),))
    func, _ = import_exported("main", exported)
    mod = tvm.IRModule({tvm.ir.GlobalVar("main"): func})
    target = target_of("webgpu")
    with target, pytest.raises(BuildError, match="is int64; declare it int32"):
        apply(mod, target)


def test_a_kernel_no_rule_schedules_fails_the_build_by_name(monkeypatch):
    import tvm

    from wsd.build import target_of
    from wsd.passes import schedule

    monkeypatch.setattr(schedule, "dlight_rules", lambda target, options: [])
    exported = torch.export.export(InfCompare().eval(), (torch.zeros(4, 8),))
    func, _ = import_exported("main", exported)
    mod = tvm.IRModule({tvm.ir.GlobalVar("main"): func})
    target = target_of("webgpu")
    with target, pytest.raises(BuildError, match=r"kernel '\w+' has no GPU schedule \(no rule matched\)"):
        apply(mod, target)


def test_a_tuning_database_is_applied_before_dlight(tmp_path):
    """An empty MetaSchedule database: nothing to take from it, and dlight schedules the rest."""
    import tvm

    from wsd.build import target_of

    exported = torch.export.export(InfCompare().eval(), (torch.zeros(4, 8),))
    func, _ = import_exported("main", exported)
    mod = tvm.IRModule({tvm.ir.GlobalVar("main"): func})
    target = target_of("webgpu")
    steps = []
    with target, tvm.transform.PassContext(opt_level=3):
        apply(mod, target, PassOptions(tune_db=str(tmp_path)), on_step=steps.append)
    assert steps.index("apply-tuning") == steps.index("schedule") - 1


def test_hundreds_of_shaders_in_one_dawn_process(monkeypatch):
    """Regression: the validator once let Dawn's GPU instance be garbage-collected and died
    part-way through long batches. One process must now take a few hundred modules."""
    monkeypatch.setattr(wgsl, "BATCH", 1000)
    body = "@group(0) @binding(0) var<storage, read_write> a : array<f32>;\n"
    shaders = {
        f"k{i}_kernel": body + f"@compute @workgroup_size(64) fn k{i}_kernel(@builtin(global_invocation_id) g : "
        f"vec3<u32>) {{ a[g.x] = a[g.x] * {i}.0 + 1.0; }}"
        for i in range(400)
    }
    result = wgsl.validate(shaders)
    assert result.failures == {} and result.count == 400
    assert result.retries == 0


def test_fp16_infinities_become_the_largest_finite_half_not_inf_again():
    """relax.const(+-FLT_MAX, "float16") is +-inf: an fp16 build must use +-65504 instead."""
    import tvm
    from tvm import relax

    from wsd import compat
    from wsd.passes.wgsl_types import _compare_without_inf, _const_array, _finite, largest_finite

    assert largest_finite("float16") == 65504.0
    for dtype in ("float16", "float32"):
        neg_inf = relax.const(float("-inf"), dtype)
        fixed = _const_array(_finite(neg_inf))
        assert np.isfinite(fixed) and float(fixed) == -largest_finite(dtype), dtype
        x = relax.Var("x", compat.tensor_info((4,), dtype))
        test = _compare_without_inf("relax.equal", [x, neg_inf])
        bound = _const_array(test.args[1])
        assert np.isfinite(bound) and float(bound) == -largest_finite(dtype), dtype
    assert tvm  # imported for relax's registration


class BigSum(torch.nn.Module):
    def forward(self, x):
        return x.sum(dim=-1) + 1.0


def _only_fallback_module(monkeypatch, shape):
    import tvm
    from tvm.s_tir import dlight as dl

    from wsd.passes import schedule

    monkeypatch.setattr(schedule, "dlight_rules", lambda target, options: [dl.gpu.Fallback()])
    exported = torch.export.export(BigSum().eval(), (torch.zeros(*shape),))
    func, _ = import_exported("main", exported)
    return tvm.IRModule({tvm.ir.GlobalVar("main"): func})


def test_a_large_reduction_left_to_fallback_fails_unless_allowed(monkeypatch):
    from wsd.build import target_of
    from wsd.kernels import rule_counts, signatures

    target = target_of("webgpu")
    with target, pytest.raises(BuildError, match=r"only dlight's Fallback schedules it.*--allow-fallback"):
        apply(_only_fallback_module(monkeypatch, (64, 32768)), target)  # 2M elements reduced
    with target:
        mod = apply(_only_fallback_module(monkeypatch, (64, 32768)), target, PassOptions(allow_fallback=True))
        assert rule_counts(signatures(mod)) == {"Fallback": 2}  # the sum and the add
        small = apply(_only_fallback_module(monkeypatch, (4, 8)), target)  # small: Fallback is fine
        assert rule_counts(signatures(small)) == {"Fallback": 2}
