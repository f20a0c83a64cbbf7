"""The IR names and helpers every pass shares (a leaf: it imports no other pass).

- reading a Relax expression's type: `type_info`, `dtype_of`, `shape_of`, `static`, `op_name`;
- reading a kernel: `is_prim_func`, `param_buffers`, and the attributes the schedule writes;
- `kernel_swaps`: the WGSL a build ships to run in place of TVM's for kernels a pass tagged;
- `call_rewriter`: one Relax operator's calls rewritten into others, the shape of wsd's graph passes;
- `fail` and `failures`: a BuildError raised inside a pass, recognized after TVM's FFI has turned
  it into another exception on the way out.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable

from wsd.errors import BuildError

RULE_ATTR = "wsd.schedule_rule"  # which dlight rule scheduled a kernel (kernels.json, the manifest)
CONFIG_ATTR = "wsd.schedule_config"  # the rule's configuration for it, where it has one (the matmul tile)

# tvmjs asks the device for 10 storage buffers per shader stage (WebGPU's default is 8);
# a fused kernel's inputs and outputs are each one storage buffer. FuseOps does not know
# this limit, so wsd.wgsl checks every kernel against it and names the ones over it.
MAX_STORAGE_BUFFERS = 10


def type_info(expr):
    from wsd.compat import type_of

    return type_of(expr)


def dtype_of(expr) -> str:
    """A Relax expression's element type ("" where it has none: a tuple, an object)."""
    return str(getattr(type_info(expr), "dtype", ""))


def static(shape) -> list[int] | None:
    """A shape as ints, or None where a dimension is symbolic."""
    try:
        return [int(d) for d in shape]
    except TypeError:
        return None


def shape_of(expr) -> list[int] | None:
    shape = getattr(type_info(expr), "shape", None)
    return None if shape is None else static(shape)


def op_name(expr) -> str:
    """The operator a Call calls ("relax.nn.conv2d"), "" for anything else."""
    return getattr(getattr(expr, "op", None), "name", "")


def is_prim_func(func) -> bool:
    from wsd.compat import tir

    return isinstance(func, tir().PrimFunc)


def param_buffers(func) -> list:
    from wsd.compat import param_buffers as buffers

    return buffers(func)


def kernel_swaps(mod, shaders: dict[str, str], attr: str, write: Callable) -> dict[str, str]:
    """Entry point -> WGSL to run instead of TVM's, for each kernel of a scheduled module whose
    PrimFunc carries `attr` (its spec as JSON): `write(spec_fields, entry, compiled)` makes it
    from TVM's compiled shader for that entry, or returns None to keep TVM's."""
    import json

    out = {}
    for gvar, func in mod.functions_items():
        if not is_prim_func(func) or func.attrs is None or attr not in func.attrs:
            continue
        entry = f"{gvar.name_hint}_kernel"
        if entry not in shaders:
            raise ValueError(f"kernel {gvar.name_hint!r} has no compiled shader {entry!r}")
        if (code := write(json.loads(str(func.attrs[attr])), entry, shaders[entry])) is not None:
            out[entry] = code
    return out


# --- errors raised inside a pass -------------------------------------------------------------

_FAILURES: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("wsd_pass_failures", default=None)


def fail(message: str):
    """Raise a BuildError from inside a pass; `pipeline.apply` re-raises it as one after TVM's
    FFI has turned it into a RuntimeError on the way out."""
    raised = _FAILURES.get()
    if raised is not None:
        raised.append(message)
    raise BuildError(message)


@contextlib.contextmanager
def failures():
    """The messages `fail` raised while this is entered (one list per pipeline run)."""
    raised: list[str] = []
    token = _FAILURES.set(raised)
    try:
        yield raised
    finally:
        _FAILURES.reset(token)


# --- graph rewrites --------------------------------------------------------------------------


def call_rewriter(op: str, rewrite: Callable, pass_name: str):
    """A module pass that replaces each call of `op` (e.g. "relax.nn.conv2d") in every Relax
    function by `rewrite(builder, call, bound)` where that returns an expression.

    `bound(var)` is the expression a variable was bound to (None for a parameter). `rewrite` may
    emit bindings of its own through `builder`; returning a Call rather than an emitted variable
    lets FuseOps join the replacement's last operator with what follows it."""
    import tvm
    from tvm import relax

    @relax.expr_functor.mutator
    class Rewriter(relax.PyExprMutator):
        def __init__(self, mod):
            super().__init__(mod)
            self.mod_ = mod

        def visit_call_(self, call):
            call = super().visit_call_(call)
            if op_name(call) != op:
                return call
            new = rewrite(self.builder_, call, self._bound)
            return call if new is None else new

        def _bound(self, var):
            return self.lookup_binding(var) if isinstance(var, relax.Var) else None

        def run(self):
            for gvar, func in self.mod_.functions_items():
                if isinstance(func, relax.Function):
                    self.builder_.update_func(gvar, self.visit_expr(func))
            return self.builder_.get()

    @tvm.transform.module_pass(opt_level=0, name=pass_name)
    def run(mod, ctx):
        return Rewriter(mod).run()

    return run
