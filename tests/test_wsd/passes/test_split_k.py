"""Split-K for convolutions with too few output tiles (wsd/passes/split_k.py): which convs split and
how far, that the split graph computes the conv (native build against torch, strided and padded
too), that the partial sums are scheduled by the Matmul rule into WGSL Dawn accepts, and that
the sum fuses with the conv's epilogue. The gate runs it on WebGPU: the tiny models' 64-channel
convs split in two."""

from __future__ import annotations

import numpy as np
import pytest

from wsd.passes import split_k
from wsd.passes.options import DEFAULT, PassOptions


@pytest.mark.parametrize(
    ("m", "n", "channels", "area", "want"),
    [
        (2 * 64 * 64, 320, 320, 9, 4),  # SD 1.5's 64x64 level: 192 tiles of 128x128, 768 in four parts
        (2 * 32 * 32, 640, 640, 9, 8),
        (2 * 16 * 16, 1280, 1280, 9, 16),
        (2 * 8 * 8, 1280, 1280, 9, 16),
        (2 * 8 * 8, 1280, 2560, 9, 16),
        (2 * 8 * 8, 64, 64, 9, 2),  # a tiny model's conv: parts keep >= MIN_PART_K of K
        (2 * 8 * 8, 64, 32, 9, 1),  # 288 of K cannot be halved above MIN_PART_K
        (2 * 8 * 8, 1280, 1280, 1, 4),  # a 1x1 conv: parts of 320 channels
        (2 * 8 * 8, 1280, 1000, 9, 8),  # 1000 channels divide by 8, not 16
        (2 * 128 * 128, 320, 320, 9, 1),  # 1024 tiles of 128x128: whole
    ],
)
def test_split_factor(m, n, channels, area, want):
    assert split_k.split_factor(m, n, channels * area, channels, area) == want


def _conv_module(stride: int, padding: int):
    import torch

    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(256, 64, 3, stride=stride, padding=padding)

        def forward(self, x, residual):
            return (self.conv(x) + residual) / 2.0

    torch.manual_seed(stride * 10 + padding)
    x = torch.randn(2, 256, 6, 6)
    out = (6 + 2 * padding - 3) // stride + 1
    return Block().eval(), (x, torch.randn(2, 64, out, out))


def _compiled(module, args, target, options=DEFAULT):
    import torch
    from tvm.relax.frontend.torch import from_exported_program

    from wsd.passes.pipeline import apply

    mod = from_exported_program(torch.export.export(module, args), keep_params_as_input=False)
    return apply(mod, target, options)


@pytest.mark.parametrize(("stride", "padding"), [(1, 1), (2, 1), (1, 0)])
def test_split_graph_computes_the_conv(stride, padding):
    import tvm
    from tvm import relax

    from wsd.compat import llvm_target, tensor

    module, args = _conv_module(stride, padding)
    mod = _compiled(module, args, llvm_target())
    names = {g.name_hint for g, _ in mod.functions_items()}
    assert "conv2d_split_k" in names
    assert any(n.startswith("fused_conv2d_split_k_sum_add") for n in names), names  # epilogue fused
    vm = relax.VirtualMachine(relax.build(mod, llvm_target()), tvm.cpu())
    got = vm["main"](*(tensor(a.numpy(), tvm.cpu()) for a in args))
    got = got[0] if not hasattr(got, "numpy") else got
    want = module(*args).detach().numpy()
    np.testing.assert_allclose(got.numpy(), want, rtol=0, atol=2e-5)


def test_partial_sums_are_a_matmul_in_valid_wgsl():
    from wsd import wgsl
    from wsd.compat import webgpu_target
    from wsd.passes.ir import RULE_ATTR
    from wsd.passes.pipeline import build_config

    module, args = _conv_module(1, 1)
    mod = _compiled(module, args, webgpu_target())
    rules = {g.name_hint: (f.attrs or {}).get(RULE_ATTR) for g, f in mod.functions_items()}
    assert rules["conv2d_split_k"] == "Matmul"
    import tvm
    from tvm import relax

    with tvm.transform.PassContext(config=build_config(webgpu_target())):
        executable = relax.build(mod, webgpu_target())
    shaders = wgsl.shaders_of(executable.mod)
    assert any(name.startswith("conv2d_split_k") for name in shaders), sorted(shaders)
    wgsl.require_valid(shaders)


def test_off_switch_leaves_convs_whole():
    from wsd.compat import llvm_target

    module, args = _conv_module(1, 1)
    names = {
        g.name_hint for g, _ in _compiled(module, args, llvm_target(), PassOptions(split_k=False)).functions_items()
    }
    assert not any("split_k" in n for n in names)
