"""The VAE encoder's downsampling (wsd/passes/pad_apart.py, wsd/passes/schedule.py): a ResNet
output (conv + residual, scaled) followed by the Downsample's asymmetric pad. Fused into one
kernel, no rule but Fallback could schedule it, and dlight's GeneralReduction asked for 256 KiB
of workgroup memory, which TVM's WebGPU codegen refused for the whole build. With the pad
apart every conv keeps its Matmul schedule; and a schedule over the target's workgroup memory
is passed over for the next rule, so the build never reaches codegen with it."""

from __future__ import annotations

import pytest


def _downsample():
    import torch

    class Down(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(32, 32, 3, padding=1)
            self.down = torch.nn.Conv2d(32, 32, 3, stride=2)

        def forward(self, x):
            h = (self.conv(x) + x) / 1.0  # the ResNet's output_scale_factor
            return self.down(torch.nn.functional.pad(h, (0, 1, 0, 1)))

    torch.manual_seed(0)
    return Down().eval(), (torch.randn(1, 32, 64, 64),)


def _schedule(monkeypatch=None):
    import torch
    import tvm
    from tvm.relax.frontend.torch import from_exported_program

    from wsd.compat import webgpu_target
    from wsd.passes.pipeline import apply, build_config

    module, args = _downsample()
    mod = from_exported_program(torch.export.export(module, args), keep_params_as_input=False)
    target = webgpu_target()
    with target, tvm.transform.PassContext(config=build_config(target)):
        return apply(mod, target), target


def _rules(mod) -> dict[str, str]:
    from wsd.passes.ir import RULE_ATTR

    return {g.name_hint: str((f.attrs or {}).get(RULE_ATTR)) for g, f in mod.functions_items() if hasattr(f, "body")}


def _builds(mod, target) -> None:
    import tvm
    from tvm import relax

    from wsd import wgsl
    from wsd.passes.pipeline import build_config

    with tvm.transform.PassContext(config=build_config(target)):
        executable = relax.build(mod, target)
    wgsl.require_valid(wgsl.shaders_of(executable.mod))


def test_the_pad_is_its_own_kernel_and_every_conv_a_matmul():
    mod, target = _schedule()
    rules = _rules(mod)
    convs = {n: r for n, r in rules.items() if "conv2d" in n}
    assert len(convs) == 2 and set(convs.values()) == {"Matmul"}, rules
    assert any(n.startswith("pad") for n in rules), rules
    _builds(mod, target)


def test_a_schedule_over_the_workgroup_memory_is_passed_over(monkeypatch):
    """Without the pad step the fused kernel is back; GeneralReduction's schedule for it is refused
    by its size (named in the rule errors) and the build still validates."""
    from wsd.passes import pad_apart, schedule

    seen = {}
    original = schedule.ScheduleKernels._first_rule

    def recording(self, name, func):
        sch = original(self, name, func)
        seen.update({name: errors for name, errors in self.rule_errors.items()})
        return sch

    monkeypatch.setattr(pad_apart, "_PAD", __import__("re").compile(r"^$"))  # marks nothing
    monkeypatch.setattr(schedule.ScheduleKernels, "_first_rule", recording)
    mod, target = _schedule()
    over = [n for n, errors in seen.items() if any("bytes of workgroup memory" in e for e in errors)]
    assert over and all("pad" in n for n in over), seen
    _builds(mod, target)


@pytest.mark.parametrize("rows", [1, 4])
def test_the_estimate_reads_tiles_not_full_size_cache_buffers(rows):
    """A Matmul schedule's cache buffers are full size until lowering compacts them to tiles: the
    estimate reads the tiles (else every matmul would lose its schedule)."""
    import torch
    import tvm
    from tvm.relax.frontend.torch import from_exported_program

    from wsd.compat import webgpu_target
    from wsd.passes.pipeline import apply, build_config
    from wsd.passes.schedule import shared_bytes

    linear = torch.nn.Linear(256, 512).eval()
    mod = from_exported_program(torch.export.export(linear, (torch.randn(rows * 64, 256),)), keep_params_as_input=False)
    target = webgpu_target()
    with target, tvm.transform.PassContext(config=build_config(target)):
        mod = apply(mod, target)
    sizes = {n: shared_bytes(mod[n]) for n, r in _rules(mod).items() if r == "Matmul"}
    assert sizes and all(0 < s < 32768 for s in sizes.values()), (_rules(mod), sizes)
