"""fp16 builds' convs and matmuls sum in fp32 and write fp16 (wsd/passes/accumulate.py): checked
on the native build against float64, where f16 accumulators lose digits over a long K."""

from __future__ import annotations

import numpy as np
import pytest


def _module(op: str):
    from tvm import relax

    from wsd.compat import tensor_info

    bb = relax.BlockBuilder()
    if op == "matmul":
        x = relax.Var("x", tensor_info((2, 8, 2048), "float16"))
        w = relax.Var("w", tensor_info((2048, 16), "float16"))
        call = relax.op.matmul(x, w)
    else:
        x = relax.Var("x", tensor_info((1, 256, 6, 6), "float16"))
        w = relax.Var("w", tensor_info((8, 256, 3, 3), "float16"))
        call = relax.op.nn.conv2d(x, w, padding=(1, 1))
    with bb.function("main", [x, w]):
        with bb.dataflow():
            out = bb.emit_output(call)
        bb.emit_func_output(out)
    return bb.get()


def _run(mod, *args):
    import tvm
    from tvm import relax

    from wsd.compat import llvm_target, tensor

    mod = relax.transform.LegalizeOps()(mod)
    vm = relax.VirtualMachine(relax.build(mod, llvm_target()), tvm.cpu())
    return vm["main"](*(tensor(a, tvm.cpu()) for a in args)).numpy()


def _reference(op, x, w):
    x, w = x.astype("float64"), w.astype("float64")
    if op == "matmul":
        return x @ w
    import torch

    return torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w), padding=1).numpy()


@pytest.mark.parametrize("op", ["matmul", "conv2d"])
def test_sums_in_fp32_and_writes_fp16(op):
    from wsd.passes.accumulate import f32_accumulators
    from wsd.passes.ir import shape_of

    before = _module(op)
    after = f32_accumulators()(before)
    assert 'out_dtype="float32"' in after.script() and "R.astype" in after.script()
    rng = np.random.default_rng(0)
    x_shape, w_shape = (shape_of(a) for a in before["main"].params)
    # positive terms: an f16 running sum past 1024 rounds every product away to steps of 0.5+
    x = rng.uniform(0.5, 1.0, x_shape).astype("float16")
    w = rng.uniform(0.5, 1.0, w_shape).astype("float16")
    want = _reference(op, x, w)
    got, old = _run(after, x, w), _run(before, x, w)
    assert got.dtype == np.float16 and got.shape == want.shape
    rel = np.abs(got.astype("float64") - want).max() / np.abs(want).max()
    old_rel = np.abs(old.astype("float64") - want).max() / np.abs(want).max()
    assert rel < 1e-3  # one f16 rounding of the f32 sum
    assert old_rel > 4 * rel  # what the f16 accumulator gave: the pass is what makes the difference


def test_fp32_calls_are_left_alone():
    from tvm import relax

    from wsd.compat import tensor_info
    from wsd.passes.accumulate import f32_accumulators

    bb = relax.BlockBuilder()
    x = relax.Var("x", tensor_info((4, 8), "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            out = bb.emit_output(relax.op.matmul(x, relax.op.permute_dims(x)))
        bb.emit_func_output(out)
    mod = bb.get()
    assert f32_accumulators()(mod).script() == mod.script()
