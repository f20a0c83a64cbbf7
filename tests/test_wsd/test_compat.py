"""Each shim in wsd/compat.py against the installed TVM: the one place version drift is handled."""

from __future__ import annotations

import numpy as np
import pytest

from wsd import compat


def test_tir_module_has_primfunc():
    assert hasattr(compat.tir(), "PrimFunc")


def test_scheduled_attr_follows_the_tir_module():
    assert compat.scheduled_attr() == f"{compat.tir().__name__.rsplit('.', 1)[-1]}.is_scheduled"


def test_disable_storage_rewrite_is_a_known_config():
    import tvm

    assert compat.disable_storage_rewrite_key() in tvm.transform.PassContext.list_configs()


def test_dlight_has_the_gpu_rules():
    dl = compat.dlight()
    for rule in ("Matmul", "GEMV", "Reduction", "GeneralReduction", "Fallback"):
        assert hasattr(dl.gpu, rule)


def test_meta_schedule_has_a_json_database():
    assert hasattr(compat.meta_schedule().database, "JSONDatabase")


def test_tensor_round_trips_numpy():
    import tvm

    x = np.arange(6, dtype="float32").reshape(2, 3)
    np.testing.assert_array_equal(compat.tensor(x, tvm.cpu()).numpy(), x)


def test_tensor_address_is_shared_by_views_and_not_by_copies():
    import numpy as np
    import tvm

    a = compat.tensor(np.arange(6, dtype="float32"), tvm.cpu())
    b = compat.tensor(np.arange(6, dtype="float32"), tvm.cpu())
    assert compat.tensor_address(a) == compat.tensor_address(a._create_view((2, 3), "float32"))
    assert compat.tensor_address(a) != compat.tensor_address(b)


def test_tensor_info_annotates_a_relax_var():
    from tvm import relax

    var = relax.Var("x", compat.tensor_info((2, 3), "float16"))
    info = next(getattr(var, a) for a in ("struct_info", "ty", "checked_type") if hasattr(var, a))
    assert "float16" in str(info)


def test_param_buffers_of_a_kernel():
    import tvm
    from tvm import te

    a = te.placeholder((4,), name="a")
    b = te.compute((4,), lambda i: a[i] + 1, name="b")
    func = te.create_prim_func([a, b])
    assert [tuple(int(d) for d in buf.shape) for buf in compat.param_buffers(func)] == [(4,), (4,)]
    assert tvm  # the te module needs tvm loaded


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_region_dtype_of_a_blocks_write(dtype):
    from tvm import te

    a = te.placeholder((4, 4), dtype, name="a")
    k = te.reduce_axis((0, 4), name="k")
    b = te.compute((4,), lambda i: te.sum(a[i, k], axis=k), name="b")
    sch = compat.schedule_class()(te.create_prim_func([a, b]))
    block = compat.get_block(sch, "b")
    assert compat.region_dtype(sch.get(block).writes[0]) == dtype


def test_get_block_finds_a_block_by_name():
    from tvm import te

    a = te.placeholder((4,), name="a")
    b = te.compute((4,), lambda i: a[i] * 2, name="twice")
    sch = compat.schedule_class()(te.create_prim_func([a, b]))
    assert sch.get(compat.get_block(sch, "twice")).name_hint == "twice"


@pytest.mark.parametrize("make", [compat.webgpu_target, compat.llvm_target])
def test_targets_in_dict_form(make):
    target = make()
    assert target.kind.name in ("webgpu", "llvm")


def test_the_native_target_carries_its_llvm_opt_level():
    assert int(compat.llvm_target().attrs["opt-level"]) == compat.NATIVE_OPT_LEVEL


def test_tensor_cache_dump_and_load_round_trip(tmp_path):
    import tvm

    dump, load = compat.tensor_cache()
    x = np.arange(8, dtype="float32")
    dump({"p_0": x}, str(tmp_path), encode_format="raw", show_progress=False)
    params, _ = load(str(tmp_path), tvm.cpu())
    np.testing.assert_array_equal(params["p_0"].numpy(), x)


def test_return_type_rebuilds_a_function_with_fewer_params():
    """What capture.drop_unread_weights does: a weight the body never reads is dropped."""
    from tvm import relax

    x = relax.Var("x", compat.tensor_info((2, 3), "float32"))
    w = relax.Var("w", compat.tensor_info((2, 3), "float32"))
    unread = relax.Var("unread", compat.tensor_info((4,), "float32"))
    func = relax.Function([x, w, unread], relax.op.add(x, w), compat.tensor_info((2, 3), "float32"))
    assert str(compat.return_type(func)) == str(compat.tensor_info((2, 3), "float32"))

    from wsd.capture import drop_unread_weights, var_name

    kept = drop_unread_weights(func, num_input=1)
    assert [var_name(p) for p in kept.params] == ["x", "w"]
    assert str(compat.return_type(kept)) == str(compat.return_type(func))
