"""wsd/kernels.py: the kernel table a build writes (kernels.json) and its checks."""

from __future__ import annotations


def test_a_kernel_the_pipeline_did_not_make_is_named():
    """relax.build fused two finished reshapes into a copy kernel once (wsd.passes.pipeline.vm_lowering);
    `wsd build` fails naming such kernels."""
    from wsd.kernels import unplanned

    table = {"reshape34": {}, "sgemm_1x64x64x64_kn": {}}
    shaders = {"reshape34_kernel": "", "sgemm_1x64x64x64_kn_kernel": "", "fused_reshape34_reshape35_kernel_1": ""}
    assert unplanned(shaders, table) == ["fused_reshape34_reshape35"]
    assert unplanned({"reshape34_kernel": ""}, table) == []


def test_each_input_says_how_many_kernel_calls_read_its_value():
    """SiLU of the time embedding in every ResNet block (no CSE): the embedding is read by each of
    those kernels; a value read once says 1. The clobbered-input fault needs an input read twice."""
    import tvm
    from tvm import relax

    from wsd import compat
    from wsd.kernels import signatures

    t = compat.tensor_info
    bb = relax.BlockBuilder()
    temb, x = relax.Var("temb", t((2, 8), "float32")), relax.Var("x", t((2, 8), "float32"))
    with bb.function("unet", [temb, x]):
        with bb.dataflow():
            a = bb.emit(relax.op.sigmoid(temb))
            b = bb.emit(relax.op.sigmoid(temb))
            c = bb.emit(relax.op.add(relax.op.multiply(a, b), x))
            out = bb.emit_output(c)
        bb.emit_func_output(out)
    mod = relax.transform.LegalizeOps()(bb.get())
    mod = tvm.ir.transform.Sequential([relax.transform.AnnotateTIROpPattern(), relax.transform.FuseOps(0)])(mod)
    table = signatures(relax.transform.FuseTIR()(mod))
    (sigmoid,) = [k for k in table if "sigmoid" in k]
    assert table[sigmoid]["args"][0]["readers"] == 2 and "readers" not in table[sigmoid]["args"][1]
    (add,) = [k for k in table if "add" in k]
    *inputs, output = table[add]["args"]
    assert [a["readers"] for a in inputs] == [1] * len(inputs) and "readers" not in output
