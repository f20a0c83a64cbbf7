"""One Relax operator's calls rewritten into other operators: the shape of wsd's graph passes
(GroupNorm split into reductions, split-K convolutions).

`rewrite(builder, call, bound)` returns the replacement expression, or None to keep the call;
`bound(var)` is the expression a variable was bound to (None for a parameter). It may emit
bindings of its own through `builder`; returning a Call rather than an emitted variable lets
FuseOps join the replacement's last operator with what follows it.
"""

from __future__ import annotations

from collections.abc import Callable


def call_rewriter(op_name: str, rewrite: Callable, pass_name: str):
    """A module pass that replaces each call of `op_name` (e.g. "relax.nn.conv2d") in every Relax
    function by `rewrite(builder, call, bound)` where that returns an expression."""
    import tvm
    from tvm import relax

    @relax.expr_functor.mutator
    class Rewriter(relax.PyExprMutator):
        def __init__(self, mod):
            super().__init__(mod)
            self.mod_ = mod

        def visit_call_(self, call):
            call = super().visit_call_(call)
            if getattr(call.op, "name", "") != op_name:
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
