"""GroupNorm split into partial sums (wsd/passes/group_norm.py): the split graph computes GroupNorm (+SiLU)
as torch does, natively, no kernel is left doing the fused group_norm, and no full-size
intermediate is written between the statistics and the normalization."""

from __future__ import annotations

import numpy as np
import pytest


# Non-affine GroupNorm is not tested: TVM 0.27's importer fails on it (no gamma) before any
# wsd pass; diffusers' UNet and VAE always use the affine form.
# (4, (1, 64, 32, 32)): 16384 elements a group, summed in 8 parts of 2048
@pytest.mark.parametrize(("groups", "shape"), [(8, (2, 32, 6, 6)), (4, (1, 16, 5, 7)), (4, (1, 64, 32, 32))])
def test_split_group_norm_computes_group_norm(groups, shape):
    import torch
    import tvm
    from tvm import relax
    from tvm.relax.frontend.torch import from_exported_program

    from wsd.compat import llvm_target, tensor
    from wsd.passes.pipeline import apply

    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.GroupNorm(groups, shape[1], eps=1e-5), torch.nn.SiLU()).eval()
    with torch.no_grad():
        module[0].weight.normal_()
        module[0].bias.normal_()
    x = torch.randn(*shape) * 3 + 1
    mod = from_exported_program(torch.export.export(module, (x,)), keep_params_as_input=False)
    mod = apply(mod, llvm_target())
    names = [g.name_hint for g, _ in mod.functions_items()]
    assert not any("group_norm" in n for n in names), names
    stats = {"group_sums", "group_stats"}
    assert stats <= set(names), names
    # one more kernel: the normalization with the affine and the SiLU (nothing full-size in between)
    assert len(set(names) - stats - {"main"}) == 1, names
    vm = relax.VirtualMachine(relax.build(mod, llvm_target()), tvm.cpu())
    got = vm["main"](tensor(x.numpy(), tvm.cpu()))
    got = got[0] if not hasattr(got, "numpy") else got
    np.testing.assert_allclose(got.numpy(), module(x).detach().numpy(), rtol=0, atol=1e-5)


def test_a_group_is_summed_in_parts_of_at_most_2048():
    from wsd.passes.group_norm import CHUNK, chunks

    assert CHUNK == 2048
    assert chunks(144) == 1
    assert chunks(40960) == 20  # SD 1.5's top level: (2, 320, 64, 64) in 32 groups
    assert chunks(2560) == 2  # the 8x8 level: 1280 channels
    for size in (144, 2560, 40960, 1048576, 4099):
        parts = chunks(size)
        assert size % parts == 0 and size // parts <= CHUNK or parts == size


def _group_norm_module(groups, shape):
    import torch
    from tvm.relax.frontend.torch import from_exported_program

    module = torch.nn.GroupNorm(groups, shape[1], eps=1e-5).eval()
    return from_exported_program(torch.export.export(module, (torch.zeros(shape),)), keep_params_as_input=False)


def test_the_statistics_hold_where_the_mean_is_large_beside_the_spread():
    """Values of 300 +- 0.01 in fp32: a plain sum of squares loses the variance to cancellation
    (E[x^2] - mean^2 of 90000-sized numbers); each part's sums are taken around its own first
    value, so the normalized output matches float64's."""
    import tvm
    from tvm import relax

    from wsd.compat import llvm_target, tensor
    from wsd.passes.pipeline import apply

    shape = (1, 8, 32, 32)  # 2 groups of 4096 elements: 2 parts each
    x = (np.random.default_rng(0).standard_normal(shape) * 0.01 + 300).astype(np.float32)
    vm = relax.VirtualMachine(relax.build(apply(_group_norm_module(2, shape), llvm_target()), llvm_target()), tvm.cpu())
    got = vm["main"](tensor(x, tvm.cpu()))
    got = (got[0] if not hasattr(got, "numpy") else got).numpy()
    grouped = x.astype(np.float64).reshape(1, 2, -1)
    want = (grouped - grouped.mean(-1, keepdims=True)) / np.sqrt(grouped.var(-1, keepdims=True) + 1e-5)
    # the output's spread is the variance's test; its offset is the mean's, to within what fp32
    # holds of 300 (half an ulp, 1.5e-5, is 1.5e-3 of the spread)
    np.testing.assert_allclose(got.reshape(1, 2, -1).std(-1), want.std(-1), rtol=1e-3)
    np.testing.assert_allclose(got, want.reshape(shape), rtol=0, atol=4e-3)


def test_the_statistics_are_two_kernels_on_the_gpu():
    """For WebGPU: one kernel of partial sums (a workgroup per part, its threads across the part)
    and one that combines them (a thread per group), then the elementwise normalization."""
    import tvm

    from wsd import compat
    from wsd.kernels import signatures
    from wsd.passes.pipeline import apply, build
    from wsd.wgsl import shaders_of

    target = compat.webgpu_target()
    with target, tvm.transform.PassContext(opt_level=3):
        mod = apply(_group_norm_module(4, (2, 64, 32, 32)), target)
    kernels = signatures(mod)
    assert {"group_sums", "group_stats"} <= set(kernels) and len(kernels) == 3, sorted(kernels)
    sums = mod["group_sums"].script()
    # 2 x 4 groups of 16384 elements in parts of 2048: 64 workgroups of 256 threads
    assert 'T.thread_binding(64, thread="blockIdx.x")' in sums and 'T.thread_binding(256, thread="threadIdx.x")' in sums
    shaders = shaders_of(build(mod, target).mod)
    assert {"group_sums_kernel", "group_stats_kernel"} <= set(shaders)
