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
    stats = {"group_sums", "group_mean", "group_sq_sums", "group_rstd"}
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
