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
