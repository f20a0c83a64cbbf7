"""fp16 builds' softmax (wsd/passes/half_softmax.py): fp16 in and out with fp32 inside, and the
fp32 round trip ToMixedPrecision leaves around it dropped; checked on the native build."""

from __future__ import annotations

import numpy as np


def _attention_tail(cast_back: bool):
    """x (fp16 scores) -> fp32 -> softmax -> reshape -> [fp16], the shape of an fp16 UNet's attention."""
    from tvm import relax

    from wsd.compat import tensor_info

    bb = relax.BlockBuilder()
    x = relax.Var("x", tensor_info((2, 4, 8, 16), "float16"))
    with bb.function("main", [x]):
        with bb.dataflow():
            up = bb.emit(relax.op.astype(x, "float32"))
            soft = bb.emit(relax.op.nn.softmax(up, axis=-1))
            flat = bb.emit(relax.op.reshape(soft, (8, 8, 16)))
            out = bb.emit_output(relax.op.astype(flat, "float16") if cast_back else relax.op.add(flat, flat))
        bb.emit_func_output(out)
    return bb.get()


def _run(mod, x):
    import tvm
    from tvm import relax

    from wsd.compat import llvm_target, tensor

    mod = relax.transform.LegalizeOps()(mod)
    vm = relax.VirtualMachine(relax.build(mod, llvm_target()), tvm.cpu())
    return vm["main"](tensor(x, tvm.cpu())).numpy()


def _softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def test_softmax_reads_and_writes_fp16_and_the_fp32_copies_are_gone():
    from wsd.passes.half_softmax import fp16_softmax_pass

    before = _attention_tail(cast_back=True)
    after = fp16_softmax_pass()(before)
    text = after.script()
    assert "R.astype" not in text and "R.nn.softmax" not in text, text
    assert "softmax_f16" in text
    x = (np.random.default_rng(0).standard_normal((2, 4, 8, 16)) * 4).astype("float16")
    got = _run(after, x)
    assert got.dtype == np.float16 and got.shape == (8, 8, 16)
    want = _softmax(x.astype("float64")).reshape(8, 8, 16)
    assert np.abs(got.astype("float64") - want).max() < 1e-3  # fp16 rounding of an fp32 result
    np.testing.assert_array_equal(got, _run(before, x))  # what the fp32 softmax gave, bit for bit


def test_an_fp32_consumer_keeps_its_fp32_values():
    """Where the softmax's fp32 result is used as fp32, the upcast stays (after the fp16 softmax)."""
    from wsd.passes.half_softmax import fp16_softmax_pass

    after = fp16_softmax_pass()(_attention_tail(cast_back=False))
    assert "softmax_f16" in after.script() and "R.astype(" in after.script()
    x = np.random.default_rng(1).standard_normal((2, 4, 8, 16)).astype("float16")
    got = _run(after, x)
    want = 2 * _softmax(x.astype("float64")).reshape(8, 8, 16)
    assert got.dtype == np.float32 and np.abs(got - want).max() < 2e-3
