"""The im2col gathers get a run of outputs per thread (wsd/passes/gather_schedule.py): the
longest run that divides the innermost extent, unrolled; other elementwise kernels, reductions
and odd widths stay with dlight's Fallback. Numerics are the gate's: every conv of the tiny
--subgroup-matrix builds gathers through this schedule on SwiftShader."""

from __future__ import annotations

import pytest


def _elementwise(shape, name="im2col"):
    from tvm import te

    a = te.placeholder(shape, "float16", name="a")
    b = te.compute(shape, lambda *i: a(*i) * a(*i) + a(*i), name=name)
    return te.create_prim_func([a, b])


def _row_sum(shape):
    from tvm import te

    a = te.placeholder(shape, "float32", name="a")
    k = te.reduce_axis((0, shape[-1]), name="k")
    s = te.compute(shape[:-1], lambda *i: te.sum(a(*i, k), axis=k), name="s")
    return te.create_prim_func([a, s])


def _apply(func):
    from wsd.compat import webgpu_target
    from wsd.passes.gather_schedule import gather_rule

    target = webgpu_target()
    with target:
        return gather_rule().apply(func, target, False)


def _inner_extents(sch) -> list[int]:
    from wsd.compat import get_block

    block = get_block(sch, "im2col")
    return [int(sch.get(loop).extent) for loop in sch.get_loops(block)]


@pytest.mark.parametrize(("width", "run"), [(64, 8), (12, 4), (6, 2)])
def test_a_thread_writes_the_longest_run_that_divides_the_row(width, run):
    sch = _apply(_elementwise((2, 3, width)))
    assert sch is not None
    extents = _inner_extents(sch)
    assert extents[-2:] == [256, run] and "T.unroll" in sch.mod["main"].script()
    assert extents[0] * 256 * run >= 2 * 3 * width  # every output has a thread


def test_the_run_is_split_off_before_the_loops_are_fused():
    """The unrolled index is added at the end of the innermost axis only, so the other axes'
    divisions are the same expression for all eight copies (fusing first puts it inside them)."""
    import re

    script = _apply(_elementwise((2, 3, 64))).mod["main"].script()
    inner = re.search(r"for (\w+) in T\.unroll\(8\)", script).group(1)
    bindings = [line.strip() for line in script.splitlines() if "T.axis.spatial(" in line]
    assert all(inner not in b for b in bindings[:-1]), bindings
    assert bindings[-1].endswith(f"+ {inner})"), bindings


def test_other_elementwise_kernels_odd_widths_and_reductions_are_left_to_fallback():
    assert _apply(_elementwise((4, 64), name="T_add")) is None
    assert _apply(_elementwise((4, 7))) is None
    assert _apply(_row_sum((4, 64))) is None


def test_the_rule_comes_before_fallback_and_its_shaders_are_valid_wgsl():
    import torch
    import tvm
    from tvm import relax
    from tvm.relax.frontend.torch import from_exported_program

    from wsd import wgsl
    from wsd.compat import webgpu_target
    from wsd.passes.ir import RULE_ATTR
    from wsd.passes.options import PassOptions
    from wsd.passes.pipeline import apply, build_config

    class GroupNormSiluConv(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.norm = torch.nn.GroupNorm(8, 32)
            self.conv = torch.nn.Conv2d(32, 32, 3, padding=1)

        def forward(self, x):
            return self.conv(torch.nn.functional.silu(self.norm(x)))

    torch.manual_seed(0)
    exported = torch.export.export(GroupNormSiluConv().eval(), (torch.randn(2, 32, 16, 16),))
    mod = from_exported_program(exported, keep_params_as_input=False)
    target = webgpu_target()
    with target, tvm.transform.PassContext(config=build_config(target)):
        mod = apply(mod, target, PassOptions(dtype="float16", subgroup_matrix=True))
        executable = relax.build(mod, target)
    rules = {g.name_hint: str((f.attrs or {}).get(RULE_ATTR)) for g, f in mod.functions_items() if hasattr(f, "body")}
    gathers = [name for name in rules if name.endswith("im2col")]
    assert gathers and all(rules[name] == "Gather" for name in gathers), rules
    assert "Fallback" in {rules[name] for name in rules if name not in gathers}  # the GroupNorm's own
    shaders = wgsl.shaders_of(executable.mod)
    wgsl.require_valid(shaders)
    gather = shaders[f"{gathers[0]}_kernel"]
    assert gather.count("im2col_intermediate_ptr[") == 8  # eight stores per thread
