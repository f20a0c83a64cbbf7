"""The pass pipeline's order under each set of options, and that its knobs and files reach the
build key (wsd/passes/pipeline.py, wsd/passes/options.py)."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from wsd import build
from wsd.passes.options import PassOptions
from wsd.passes.pipeline import Step, steps

LOWERING = ["legalize", "annotate", "pad-apart", "fuse", "fuse-tir", "dead-code"]


def names(options: PassOptions, injected=()) -> list[str]:
    return [s.name for s in steps(options, injected)]


def test_an_fp32_build_runs_the_plain_pipeline():
    assert names(PassOptions()) == [
        "decompose",
        "fold",
        "cse",
        "bundle-params",
        "wgsl-types",
        "split-group-norm",
        "split-k",
        *LOWERING,
        "schedule",
    ]


def test_every_optional_step_in_its_place():
    options = PassOptions(dtype="float16", subgroup_matrix=True, fused_attention=True, cse=True, tune_db="db")
    fault = Step("fault:dropped-bias@clip", lambda t, o: None, "an injected fault")
    assert names(options, (fault,)) == [
        "decompose",
        "fold",
        "float16",  # names weights one by one: before they are bundled
        "subgroup-attention",  # before half-softmax: it matches the softmax between casts
        "half-softmax",
        "cse",  # after float16: the casts it adds of one input merge too
        "bundle-params",
        "wgsl-types",
        "split-group-norm",
        "subgroup-gemm",  # before split-k: the convs it takes are GEMMs then
        "f32-accumulate",  # after the GEMMs (f32 inside already), before split-k's partial sums
        "split-k",
        *LOWERING,
        "fault:dropped-bias@clip",
        "apply-tuning",
        "schedule",
    ]


def test_attention_is_fused_only_where_asked_in_fp16_tensor_core_builds():
    assert "subgroup-attention" not in names(PassOptions(subgroup_matrix=True, fused_attention=True))
    assert "subgroup-attention" not in names(PassOptions(dtype="float16", fused_attention=True))
    assert "subgroup-attention" not in names(PassOptions(dtype="float16", subgroup_matrix=True))


def test_cse_is_on_unless_left_out():
    assert "cse" in names(PassOptions(dtype="float16", subgroup_matrix=True))
    assert "cse" not in names(PassOptions(dtype="float16", subgroup_matrix=True, cse=False))


def test_repeated_work_is_done_once_and_still_fused():
    """With CSE: SiLU of one input twice and one input cast twice: each one kernel after CSE, and the
    SiLU's sigmoid and multiply still one kernel (CSE's aliases would split them without the
    canonicalization; in tensor-core builds subgroup-gemm's rewrite happens to drop them too)."""
    import re

    import torch
    import tvm
    from tvm.relax.frontend.torch import from_exported_program

    from wsd.compat import webgpu_target
    from wsd.passes.pipeline import apply, build_config

    class TwiceSilu(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = torch.nn.Linear(32, 32), torch.nn.Linear(32, 32)
            self.k, self.v = torch.nn.Linear(16, 32), torch.nn.Linear(16, 32)

        def forward(self, x, t, context):
            h = x + self.a(torch.nn.functional.silu(t)) + self.b(torch.nn.functional.silu(t))
            return h + self.k(context).sum(1) + self.v(context).sum(1)

    inputs = (torch.randn(2, 32), torch.randn(2, 32), torch.randn(2, 7, 16))
    exported = torch.export.export(TwiceSilu().eval(), inputs)
    target = webgpu_target()
    mod = from_exported_program(exported, keep_params_as_input=True)
    with target, tvm.transform.PassContext(config=build_config(target)):
        lowered = apply(mod, target, PassOptions(dtype="float16", cse=True))
    calls = re.findall(r"call_tir\(cls\.(\w+)", lowered.script())
    assert sum("sigmoid" in c for c in calls) == 1 and not any(c in ("tir_sigmoid", "multiply") for c in calls), calls
    assert sum(c.startswith("fused_reshape_cast") for c in calls) == 1, calls  # the context's fp16 cast


def test_split_k_can_be_left_out():
    assert "split-k" not in names(PassOptions(split_k=False))


def test_build_options_carry_every_pass_knob():
    knobs = {f.name for f in dataclasses.fields(PassOptions)}
    assert knobs <= {f.name for f in dataclasses.fields(build.BuildOptions)}
    opts = build.BuildOptions("sd15-tiny", random_init=True, dtype="float16", split_k=False, matmul_tile="64x64")
    assert opts.passes == PassOptions(dtype="float16", split_k=False, matmul_tile="64x64")


@pytest.mark.parametrize(
    ("field", "value"), [("split_k", False), ("matmul_tile", "32x32"), ("matmul_unroll", 256), ("cse", False)]
)
def test_a_pass_knob_changes_the_build_key(field, value, tmp_path):
    from wsd import models

    spec = models.get("sd15-tiny")
    base = build.BuildOptions("sd15-tiny", random_init=True)
    (tmp_path / "f").mkdir()
    key = build.build_key_inputs(base, spec, tmp_path / "f")
    other = build.build_key_inputs(dataclasses.replace(base, **{field: value}), spec, tmp_path / "f")
    assert key["options"] != other["options"]


def test_a_new_pass_file_changes_the_compiler_key(tmp_path):
    copy = tmp_path / "wsd"
    shutil.copytree(Path(build.__file__).parent, copy, ignore=shutil.ignore_patterns("__pycache__", "webrt"))
    before = build.compiler_fingerprint(copy)
    assert before == build.compiler_fingerprint(Path(build.__file__).parent)
    (copy / "passes" / "fuse_attention.py").write_text('"""a new pass"""\n')
    assert build.compiler_fingerprint(copy) != before
    assert copy / "passes" / "fuse_attention.py" in build.compiler_files(copy)


def test_an_unknown_matmul_tile_is_refused_before_anything_is_traced():
    from wsd.errors import WsdError

    with pytest.raises(WsdError, match="matmul tile '7x7'"):
        build.check_options(build.BuildOptions("sd15-tiny", random_init=True, matmul_tile="7x7"))
