"""Make a Relax module's tensor types legal for WGSL before it is lowered.

WGSL has no 64-bit integers (TVM's WebGPU codegen stops with "do not support i64"),
and Dawn rejects kernels that keep booleans in storage buffers, which TVM declares as
`array<i8>`: the build succeeds and the page fails at pipeline creation. Both come from
any model whose graph holds int64 indices or boolean masks (CLIP's position ids, the
causal mask, SDPA's decomposition), so they are fixed here for every model:

- int64 (and 8/16-bit integer) constants become int32 (refused, naming the value, if
  one does not fit); creation ops and `astype` asked for those types ask for int32;
  operators downstream follow.
- infinite constants become the largest finite float of their sign, and comparisons with
  them become <= / >= that float, since WGSL has no infinity literal (TVM prints `inff`).
- a boolean result that another kernel reads is stored as int32 and turned back
  into a boolean where it is read, so the cast fuses into both kernels and no
  boolean ever crosses a storage buffer.
- argmax/argmin (int64 indices; CLIP's pooled output finds the end token with one) become
  float32 max reductions that return int32 indices, the first of the extremum as in torch.

Runs after constant folding (so `arange` and friends are constants) and before
LegalizeOps (so it sees high-level operators).
"""

from __future__ import annotations

import numpy as np

from wsd.passes.ir import dtype_of, fail, type_info

INT32 = np.iinfo(np.int32)
# Integer types WGSL cannot hold in storage (no 64-bit ints; no 8/16-bit storage without
# extensions): all become int32. Widening 8/16-bit values changes nothing but wrap-around.
TO_INT32 = ("int64", "uint64", "int8", "uint8", "int16", "uint16")


def _is_const(expr) -> bool:
    return type(expr).__name__ in ("Constant", "GenericConst")


def _const_array(expr) -> np.ndarray:
    data = getattr(expr, "data", None)
    if data is None:
        data = expr.value
    return data.numpy()


def narrow_const(expr, where: str):
    from tvm import relax

    values = _const_array(expr)
    if values.size and (values.min() < INT32.min or values.max() > INT32.max):
        fail(f"{where}: integer constant {values.max()} does not fit int32; WGSL has no 64-bit integers")
    return relax.const(values.astype("int32"), "int32")


def wgsl_legal_types():
    import tvm
    from tvm import relax

    @relax.expr_functor.mutator
    class WgslTypes(relax.PyExprMutator):
        def __init__(self, mod):
            super().__init__(mod)
            self.mod_ = mod
            self.where = ""
            self.stored_bools = []
            self.boolish = []
            self.pending_boolish = False
            self._dataflow_depth = 0

        def _narrow(self, const):
            return narrow_const(const, self.where) if dtype_of(const) in TO_INT32 else const

        # The constant visitor is `visit_constant_` up to TVM 0.26, `visit_generic_const_` from 0.27.
        def visit_constant_(self, const):
            return self._narrow(const)

        def visit_generic_const_(self, const):
            return self._narrow(const)

        def visit_call_(self, call):
            op_name = getattr(call.op, "name", "")
            if op_name in ("relax.argmax", "relax.argmin"):
                return _arg_extremum(self.builder_, op_name, self.visit_expr(call.args[0]), call.attrs, self.where)
            if call.attrs is not None and str(getattr(call.attrs, "dtype", "")) in TO_INT32:
                args = [self.visit_expr(a) for a in call.args]
                if op_name == "relax.astype" and self._reads_bool(args[0]):
                    self.pending_boolish = True  # an integer view of a boolean: its values are 0 and 1
                return _int32_creation(op_name, args, self.where)
            args = []
            for arg in call.args:
                new = self.visit_expr(arg)
                if any(new.same_as(s) for s in self.stored_bools):
                    # Read back as a boolean at each use, so the cast fuses into the reader.
                    new = self.builder_.emit(relax.op.astype(new, "bool"))
                args.append(new)
            if op_name in INF_COMPARISONS:
                args = _compare_without_inf(op_name, args)
                if isinstance(args, relax.Call):
                    return args
            args = [_finite(a) for a in args]
            if op_name in BOOL_REDUCTIONS and (dtype_of(args[0]) == "bool" or self._is_boolish(args[0])):
                # Reduce 0/1 values in float32: a boolean reduction keeps an i8 intermediate in
                # storage, and an int32 max starts from -2147483648, which TVM prints as a bare
                # literal WGSL refuses ("value cannot be represented as 'i32'").
                result_dtype = dtype_of(args[0]) if dtype_of(args[0]) != "bool" else "bool"
                as_float = self.builder_.emit(relax.op.astype(args[0], "float32"))
                reduced = self.builder_.emit(relax.Call(call.op, [as_float, *args[1:]], call.attrs, _type_args(call)))
                return relax.op.astype(reduced, result_dtype)
            if op_name == "relax.astype" and self._reads_bool(args[0]):
                self.pending_boolish = True
            return relax.Call(call.op, args, call.attrs, _type_args(call))

        def _reads_bool(self, arg):
            return dtype_of(arg) == "bool" or any(arg.same_as(b) for b in self.stored_bools)

        def _is_boolish(self, var):
            return any(var.same_as(b) for b in self.boolish)

        def visit_var_binding_(self, binding):
            self.pending_boolish = False
            value = self.visit_expr(binding.value)
            if _is_const(value) and dtype_of(value) in TO_INT32:
                value = narrow_const(value, self.where)
            is_dataflow = type(binding.var).__name__ == "DataflowVar"
            if is_dataflow and dtype_of(value) == "bool" and isinstance(value, relax.Call):
                # Stored as int32: a boolean that crosses kernels would be an array<i8>.
                new_var = self.builder_.emit(relax.op.astype(self.builder_.emit(value), "int32"))
                self.stored_bools.append(new_var)
            elif is_dataflow:
                new_var = self.builder_.emit(value)
                if self.pending_boolish:
                    self.boolish.append(new_var)
            else:
                new_var = self.builder_.emit_output(value) if self._in_dataflow() else self.builder_.emit(value)
            self.set_var_remap(_vid(binding.var), new_var)

        def _in_dataflow(self):
            return self._dataflow_depth > 0

        def visit_dataflow_block_(self, block):
            self._dataflow_depth += 1
            try:
                return super().visit_dataflow_block_(block)
            finally:
                self._dataflow_depth -= 1

        def run(self):
            for gvar, func in self.mod_.functions_items():
                if isinstance(func, relax.Function):
                    self.where = gvar.name_hint
                    for param in func.params:
                        if dtype_of(param) == "int64":
                            fail(
                                f"entry point {gvar.name_hint!r}: input {param} is int64; declare it int32 "
                                "(WGSL has no 64-bit integers)"
                            )
                    self.builder_.update_func(gvar, self.visit_expr(func))
            return self.builder_.get()

    @tvm.transform.module_pass(opt_level=0, name="wsd.WgslLegalTypes")
    def run(mod, ctx):
        return WgslTypes(mod).run()

    return run


def _int32_creation(op_name: str, args, where: str):
    """The same operator asked for int32 instead of int64."""
    from tvm import relax

    def value(prim):
        return prim.value if hasattr(prim, "value") else prim

    if op_name == "relax.astype":
        return relax.op.astype(args[0], "int32")
    if op_name == "relax.arange":
        return relax.op.arange(*(value(a) for a in args), dtype="int32")
    if op_name in ("relax.full", "relax.full_like"):
        return getattr(relax.op, op_name.split(".")[1])(*args, dtype="int32")
    if op_name in ("relax.zeros", "relax.ones", "relax.zeros_like", "relax.ones_like"):
        return getattr(relax.op, op_name.split(".")[1])(*args, dtype="int32")
    fail(
        f"{where}: {op_name} makes a 64/16/8-bit integer tensor and has no int32 form here; "
        "WGSL has no 64-bit integers (add the operator to wsd/passes/wgsl_types.py)"
    )


def _arg_extremum(builder, op_name: str, data, attrs, where: str):
    """argmax/argmin as float32 reductions with int32 indices: the first index j where x_j is
    the extremum is n-1 - max_j(x_j == m ? n-1-j : -1). Exact for floats and for integers
    below 2**24 (token ids)."""
    from tvm import relax

    shape = [int(d) for d in type_info(data).shape]
    if attrs.axis is None:
        fail(f"{where}: {op_name} over a whole tensor has no int32 form here (give an axis)")
    axis = int(attrs.axis) % len(shape)
    n = shape[axis]
    emit = builder.emit
    x = emit(relax.op.astype(data, "float32"))
    best = emit((relax.op.max if op_name == "relax.argmax" else relax.op.min)(x, axis=axis, keepdims=True))
    ramp = [1] * len(shape)
    ramp[axis] = n
    reverse = relax.const(np.arange(n - 1, -1, -1, dtype="float32").reshape(ramp))
    score = emit(relax.op.where(relax.op.equal(x, best), reverse, relax.const(-1.0, "float32")))
    top = emit(relax.op.max(score, axis=axis, keepdims=bool(attrs.keepdims)))
    return relax.op.astype(relax.op.subtract(relax.const(float(n - 1), "float32"), top), "int32")


FLT_MAX = float(np.finfo(np.float32).max)


def largest_finite(dtype: str) -> float:
    """The largest finite value of a float dtype: FLT_MAX cast to float16 would be inf again."""
    return float(np.finfo(np.dtype(dtype)).max)


INF_COMPARISONS = ("relax.equal", "relax.not_equal")


def _inf_sign(expr) -> int:
    """+1 / -1 for a float scalar constant holding +inf / -inf, else 0."""
    if not _is_const(expr) or dtype_of(expr) not in ("float32", "float16"):
        return 0
    values = _const_array(expr)
    if values.size != 1 or not np.isinf(values).all():
        return 0
    return 1 if float(values.reshape(())) > 0 else -1


def _compare_without_inf(op_name, args):
    """x == -inf becomes x <= -MAX (the dtype's largest finite value); likewise for +inf.

    WGSL has no infinity literal and TVM prints one as `inff`, which no WGSL front end accepts.
    Since other infinite constants become +-FLT_MAX (`_finite`), a value filled with "-inf"
    arrives as -FLT_MAX, and `<=` still finds it; true infinities compare the same way.
    Only a genuine +-FLT_MAX input is now taken for an infinity (NaN stays false).
    """
    from tvm import relax

    for value, other in ((args[0], args[1]), (args[1], args[0])):
        sign = _inf_sign(other)
        if sign:
            bound = relax.const(sign * largest_finite(dtype_of(other)), dtype_of(other))
            test = relax.op.greater_equal(value, bound) if sign > 0 else relax.op.less_equal(value, bound)
            return test if op_name == "relax.equal" else relax.op.logical_not(test)
    return args


def _finite(expr):
    """Any other infinite scalar constant becomes the largest finite float of its sign."""
    from tvm import relax

    sign = _inf_sign(expr)
    return relax.const(sign * largest_finite(dtype_of(expr)), dtype_of(expr)) if sign else expr


BOOL_REDUCTIONS = ("relax.max", "relax.min", "relax.sum", "relax.prod")


def _type_args(call):
    """A call's explicit result types: `sinfo_args` up to TVM 0.26, `ty_args` from 0.27."""
    return call.sinfo_args if hasattr(call, "sinfo_args") else call.ty_args


def _vid(var):
    return getattr(var, "vid", var)


def make(target, options):
    """The pipeline's step (wsd/passes/pipeline.py)."""
    return wgsl_legal_types()
