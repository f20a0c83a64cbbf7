"""fp16 compute and fp16 weights (`--dtype float16`).

TVM's ToMixedPrecision casts conv/matmul inputs to float16 (accumulating in fp32 where it
chooses to), and every float32 weight parameter becomes a float16 one (`fp16_input_names`), so
the shards hold half the bytes (wsd/build.py casts them). Entry inputs and outputs stay float32.
It names parameters one by one, so it runs before bundle-params.
"""

from __future__ import annotations

from wsd.passes.ir import is_prim_func, type_info


def weight_names(mod, dtype: str) -> set[str]:
    """Names of the weight parameters (those after `num_input`) of `dtype` in every Relax function."""
    from wsd.capture import var_name

    out = set()
    for _, func in mod.functions_items():
        if is_prim_func(func) or "num_input" not in (func.attrs or {}):
            continue
        for param in func.params[int(func.attrs["num_input"]) :]:
            if str(getattr(type_info(param), "dtype", "")) == dtype:
                out.add(var_name(param))
    return out


def mixed_precision_pass():
    import tvm
    from tvm import relax

    def mixed(mod, names):
        return relax.transform.ToMixedPrecision(out_dtype="float16", fp16_input_names=sorted(names))(mod)

    @tvm.transform.module_pass(opt_level=0, name="wsd.float16")
    def run(mod, ctx):
        names = set()
        for gvar, func in mod.functions_items():
            own = weight_names(tvm.IRModule({gvar: func}), "float32")
            try:  # TVM 0.27 fails on some entries' fp16 weights (the VAE's: "Expected TensorType,
                mixed(tvm.IRModule({gvar: func}), own)  # but got T.int64"): those keep fp32 weights
                names |= own
            except tvm.error.InternalError:
                pass
        return mixed(mod, names)

    return run


def make(target, options):
    """The pipeline's step (wsd/passes/pipeline.py)."""
    return mixed_precision_pass()
